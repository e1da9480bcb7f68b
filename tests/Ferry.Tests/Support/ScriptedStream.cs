namespace Ferry.Tests.Support;

/// <summary>
/// A duplex stream for decoder tests and fuzz targets (fuzz/Ferry.Fuzz compiles this file in):
/// reads come from a fixed byte array (then end of stream), whole or — with <c>pieces</c> — in
/// pieces whose sizes cycle as a TCP stream may deliver them; writes go to a sink that the test can
/// inspect. Nothing in it can block.
/// </summary>
internal sealed class ScriptedStream : Stream
{
    /// <summary>Read sizes of a trickling peer: odd, tiny and page-sized, so every decoder meets a split at every kind of boundary.</summary>
    public static readonly int[] Trickle = [1, 7, 3, 24, 2, 4096, 5, 48, 13];

    private readonly byte[] _input;
    private readonly int[]? _pieces;
    private int _position;
    private int _piece;

    public ScriptedStream(byte[] input, int[]? pieces = null)
    {
        _input = input;
        _pieces = pieces;
    }

    public MemoryStream Written { get; } = new();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = Math.Min(buffer.Length, _input.Length - _position);
        if (_pieces is { } pieces)
        {
            n = Math.Min(n, pieces[_piece++ % pieces.Length]);
        }
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
