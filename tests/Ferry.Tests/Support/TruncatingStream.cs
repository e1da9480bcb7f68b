namespace Ferry.Tests.Support;

/// <summary>
/// A link that breaks: the first <c>limit</c> bytes written get through, then the connection is
/// cut (the inner stream, and with it the socket, is closed) and the write fails as a real
/// broken connection would. Reads pass through until the cut.
/// </summary>
internal sealed class TruncatingStream : LinkDecorator
{
    private readonly long _limit;
    private long _written;

    public TruncatingStream(Stream inner, long limit)
        : base(inner)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        _limit = limit;
    }

    /// <summary>True once the connection was cut.</summary>
    public bool Cut { get; private set; }

    /// <summary>Bytes that went through before the cut.</summary>
    public long BytesPassed => _written;

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (Cut)
        {
            throw new IOException("link cut (test): connection already closed");
        }
        long room = _limit - _written;
        if (buffer.Length <= room)
        {
            Inner.Write(buffer);
            _written += buffer.Length;
            return;
        }
        if (room > 0)
        {
            Inner.Write(buffer[..(int)room]);
            Inner.Flush();
            _written += room;
        }
        Cut = true;
        Inner.Dispose();
        throw new IOException($"link cut (test) after {_limit} bytes");
    }

    public override void Flush()
    {
        if (!Cut)
        {
            Inner.Flush();
        }
    }

    public override bool CanWrite => !Cut && Inner.CanWrite;
}
