namespace Ferry.Tests.Support;

/// <summary>
/// A link that goes silent: the first <c>limit</c> bytes written get through, then writes block
/// (the peer hears nothing, yet the connection stays open) until <c>stall</c> has passed, when
/// the write fails as a dead connection finally would. Reads pass through.
/// </summary>
internal sealed class StallingStream(Stream inner, long limit, TimeSpan stall) : Stream
{
    private long _written;

    /// <summary>True once a write has stalled.</summary>
    public bool Stalled { get; private set; }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_written + buffer.Length > limit)
        {
            Stalled = true;
            Thread.Sleep(stall);
            throw new IOException($"link stalled (test) after {limit} bytes");
        }
        inner.Write(buffer);
        _written += buffer.Length;
    }

    public override void Flush() => inner.Flush();

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => inner.Read(buffer);

    public override bool CanRead => inner.CanRead;
    public override bool CanSeek => false;
    public override bool CanWrite => inner.CanWrite;
    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }
}
