using System.IO.Hashing;
using System.Runtime.ExceptionServices;

namespace Ferry.Protocol.Framing;

/// <summary>
/// Writes checksummed, sequenced frames to a stream. A frame is assembled in place in one
/// buffer (header then payload) so page bytes are copied once, straight from guest RAM.
/// The first write error is latched: every later call rethrows it (a sticky error, as in QEMU's
/// QEMUFile), so callers check once at round boundaries rather than after every page.
/// Not thread-safe: one writer thread per direction.
/// </summary>
public sealed class FrameWriter
{
    private Stream _stream;
    private readonly byte[] _buffer = new byte[FrameHeader.Size + FrameHeader.MaxPayload];
    private ulong _sequence;
    private FrameType? _open;
    private ExceptionDispatchInfo? _error;

    public FrameWriter(Stream stream)
    {
        _stream = stream;
    }

    /// <summary>Total bytes written, headers included.</summary>
    public long BytesWritten { get; private set; }

    public Exception? Error => _error?.SourceException;

    /// <summary>Starts a frame; returns the payload area to fill.</summary>
    public Span<byte> Begin(FrameType type)
    {
        _error?.Throw();
        if (_open is not null)
        {
            throw new InvalidOperationException($"frame {_open} still open");
        }
        _open = type;
        return _buffer.AsSpan(FrameHeader.Size, FrameHeader.MaxPayload);
    }

    /// <summary>The open frame's payload area again (a builder that fills it in steps holds no span across them).</summary>
    public Span<byte> OpenPayload => _open is not null
        ? _buffer.AsSpan(FrameHeader.Size, FrameHeader.MaxPayload)
        : throw new InvalidOperationException("no frame open");

    /// <summary>True while a frame is begun and not yet completed or discarded.</summary>
    public bool HasOpenFrame => _open is not null;

    /// <summary>Drops a frame begun but not completed (e.g. when cancelling mid-batch); nothing of it was written.</summary>
    public void DiscardOpenFrame() => _open = null;

    /// <summary>Seals the open frame with its length and checksum and writes it.</summary>
    public void Complete(int payloadLength)
    {
        if (_open is not { } type)
        {
            throw new InvalidOperationException("no frame open");
        }
        _open = null;
        if ((uint)payloadLength > FrameHeader.MaxPayload)
        {
            throw new ArgumentOutOfRangeException(nameof(payloadLength));
        }
        int total = FrameHeader.Size + payloadLength;
        FrameHeader.WriteWithoutChecksum(_buffer, type, (uint)payloadLength, _sequence);
        ulong checksum = XxHash3.HashToUInt64(_buffer.AsSpan(8, total - 8));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(_buffer, checksum);
        try
        {
            _stream.Write(_buffer, 0, total);
        }
        catch (Exception ex)
        {
            _error = ExceptionDispatchInfo.Capture(ex);
            throw;
        }
        _sequence++;
        BytesWritten += total;
    }

    /// <summary>Writes a whole frame from a ready payload.</summary>
    public void Write(FrameType type, ReadOnlySpan<byte> payload)
    {
        payload.CopyTo(Begin(type));
        Complete(payload.Length);
    }

    public void Flush()
    {
        _error?.Throw();
        try
        {
            _stream.Flush();
        }
        catch (Exception ex)
        {
            _error = ExceptionDispatchInfo.Capture(ex);
            throw;
        }
    }

    /// <summary>
    /// Continues on a new connection (post-copy recovery): the sticky error is cleared, sequence
    /// numbers start again at 0 as on any connection, and <see cref="BytesWritten"/> keeps counting.
    /// </summary>
    public void Reconnect(Stream stream)
    {
        _stream = stream;
        _error = null;
        _open = null;
        _sequence = 0;
    }

    /// <summary>The exact bytes a frame would have on the wire (for golden tests and tools).</summary>
    public static byte[] Encode(FrameType type, ReadOnlySpan<byte> payload, ulong sequence)
    {
        using var ms = new MemoryStream();
        var w = new FrameWriter(ms) { };
        w._sequence = sequence;
        w.Write(type, payload);
        return ms.ToArray();
    }
}
