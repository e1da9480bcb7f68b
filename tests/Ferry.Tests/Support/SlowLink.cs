using System.Diagnostics;

namespace Ferry.Tests.Support;

/// <summary>
/// A link slower than the sender: each write takes its size ÷ <c>bytesPerSecond</c> after the
/// previous one ends (no credit for idle time), as a saturated network would make it.
/// <see cref="Delivered"/> counts what passed, standing in for TCP's acknowledged-bytes counter.
/// </summary>
internal sealed class SlowLink(Stream inner, double bytesPerSecond) : LinkDecorator(inner)
{
    private readonly long _start = Stopwatch.GetTimestamp();
    private double _freeAt;
    private long _delivered;

    public ulong Delivered => (ulong)Interlocked.Read(ref _delivered);

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        double now = Stopwatch.GetElapsedTime(_start).TotalSeconds;
        _freeAt = Math.Max(_freeAt, now) + buffer.Length / bytesPerSecond;
        Inner.Write(buffer);
        TimeSpan due = TimeSpan.FromSeconds(_freeAt - now);
        if (due > TimeSpan.Zero)
        {
            Thread.Sleep(due);
        }
        Interlocked.Add(ref _delivered, buffer.Length);
    }
}
