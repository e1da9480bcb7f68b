namespace Ferry.Tests.Support;

/// <summary>
/// A duplex stream for decoder tests: reads come from a fixed byte array (then end of stream),
/// writes go to a sink that the test can inspect. Nothing in it can block.
/// </summary>
internal sealed class ScriptedStream : Stream
{
    private readonly byte[] _input;
    private int _position;

    public ScriptedStream(byte[] input)
    {
        _input = input;
    }

    public MemoryStream Written { get; } = new();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = Math.Min(buffer.Length, _input.Length - _position);
        _input.AsSpan(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override void Write(byte[] buffer, int offset, int count) => Written.Write(buffer, offset, count);

    public override void Write(ReadOnlySpan<byte> buffer) => Written.Write(buffer);

    public override void Flush()
    {
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
