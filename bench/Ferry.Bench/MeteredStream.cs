using System.Diagnostics;

namespace Ferry.Bench;

/// <summary>
/// A pass-through stream that adds up the time spent inside Read and Write. On the destination,
/// time in Read is time waiting for the source (or the kernel copy); on the source, time in Write
/// is time waiting for socket buffer space, i.e. for the destination. That tells which side bounds
/// a transfer. Reads and writes may come from different threads; each counter has one writer.
/// </summary>
internal sealed class MeteredStream(Stream inner) : Stream
{
    private long _readTicks;
    private long _writeTicks;
    private long _reads;
    private long _writes;

    public double ReadSeconds => Volatile.Read(ref _readTicks) / (double)Stopwatch.Frequency;

    public double WriteSeconds => Volatile.Read(ref _writeTicks) / (double)Stopwatch.Frequency;

    public long Reads => Volatile.Read(ref _reads);

    public long Writes => Volatile.Read(ref _writes);

    public override bool CanRead => inner.CanRead;
    public override bool CanSeek => false;
    public override bool CanWrite => inner.CanWrite;
    public override long Length => throw new NotSupportedException();

    // Timeouts pass through, so DestinationMigration's idle timeout (it sets ReadTimeout when CanTimeout) reaches the socket.
    public override bool CanTimeout => inner.CanTimeout;

    public override int ReadTimeout
    {
        get => inner.ReadTimeout;
        set => inner.ReadTimeout = value;
    }

    public override int WriteTimeout
    {
        get => inner.WriteTimeout;
        set => inner.WriteTimeout = value;
    }

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            return inner.Read(buffer);
        }
        finally
        {
            Volatile.Write(ref _readTicks, _readTicks + (Stopwatch.GetTimestamp() - t0));
            Volatile.Write(ref _reads, _reads + 1);
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            inner.Write(buffer);
        }
        finally
        {
            Volatile.Write(ref _writeTicks, _writeTicks + (Stopwatch.GetTimestamp() - t0));
            Volatile.Write(ref _writes, _writes + 1);
        }
    }

    public override void Flush() => inner.Flush();

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
