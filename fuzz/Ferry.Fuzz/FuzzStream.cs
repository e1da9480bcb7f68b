namespace Ferry.Fuzz;

/// <summary>
/// A peer made of fuzz bytes: reads return the input, in pieces whose sizes cycle through
/// <see cref="Pieces"/> when trickling (as a TCP stream may deliver them), and then end; writes
/// (a server's hello, a verdict) are counted and dropped. Never blocks.
/// </summary>
public sealed class FuzzStream : Stream
{
    private static readonly int[] Pieces = [1, 7, 3, 24, 2, 4096, 5, 48, 13];
    private readonly byte[] _input;
    private readonly bool _trickle;
    private int _pos;
    private int _piece;

    public FuzzStream(byte[] input, bool trickle)
    {
        _input = input;
        _trickle = trickle;
    }

    public long Written { get; private set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = Math.Min(buffer.Length, _input.Length - _pos);
        if (_trickle)
        {
            n = Math.Min(n, Pieces[_piece++ % Pieces.Length]);
        }
        _input.AsSpan(_pos, n).CopyTo(buffer);
        _pos += n;
        return n;
    }

    public override void Write(byte[] buffer, int offset, int count) => Written += count;

    public override void Write(ReadOnlySpan<byte> buffer) => Written += buffer.Length;

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
