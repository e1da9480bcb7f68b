namespace Ferry.Tests.Support;

/// <summary>
/// A link that goes silent: the first <c>limit</c> bytes written get through, then writes block
/// (the peer hears nothing, yet the connection stays open) until <c>stall</c> has passed, when
/// the write fails as a dead connection finally would. Reads pass through.
/// </summary>
internal sealed class StallingStream(Stream inner, long limit, TimeSpan stall) : LinkDecorator(inner)
{
    private long _written;

    /// <summary>True once a write has stalled.</summary>
    public bool Stalled { get; private set; }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_written + buffer.Length > limit)
        {
            Stalled = true;
            Thread.Sleep(stall);
            throw new IOException($"link stalled (test) after {limit} bytes");
        }
        Inner.Write(buffer);
        _written += buffer.Length;
    }
}
