namespace Ferry.Tests.Support;

/// <summary>
/// A link that breaks: the first <c>limit</c> bytes written get through, then the connection is
/// cut (the inner stream, and with it the socket, is closed) and the write fails as a real
/// broken connection would. Reads pass through until the cut.
/// </summary>
internal sealed class TruncatingStream : Stream
{
    private readonly Stream _inner;
    private readonly long _limit;
    private long _written;

    public TruncatingStream(Stream inner, long limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        _inner = inner;
        _limit = limit;
    }

    /// <summary>True once the connection was cut.</summary>
    public bool Cut { get; private set; }

    /// <summary>Bytes that went through before the cut.</summary>
    public long BytesPassed => _written;

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (Cut)
        {
            throw new IOException("link cut (test): connection already closed");
        }
        long room = _limit - _written;
        if (buffer.Length <= room)
        {
            _inner.Write(buffer);
            _written += buffer.Length;
            return;
        }
        if (room > 0)
        {
            _inner.Write(buffer[..(int)room]);
            _inner.Flush();
            _written += room;
        }
        Cut = true;
        _inner.Dispose();
        throw new IOException($"link cut (test) after {_limit} bytes");
    }

    public override void Flush()
    {
        if (!Cut)
        {
            _inner.Flush();
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => _inner.Read(buffer);

    public override bool CanRead => _inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => !Cut && _inner.CanWrite;

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
            _inner.Dispose();
        }
        base.Dispose(disposing);
    }
}
