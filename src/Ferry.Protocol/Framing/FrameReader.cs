using System.Buffers.Binary;
using System.IO.Hashing;

namespace Ferry.Protocol.Framing;

/// <summary>A validated frame; its payload is valid until the next <see cref="FrameReader.Read"/>.</summary>
public readonly ref struct Frame
{
    public Frame(FrameType type, ulong sequence, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Sequence = sequence;
        Payload = payload;
    }

    public FrameType Type { get; }

    public ulong Sequence { get; }

    public ReadOnlySpan<byte> Payload { get; }
}

/// <summary>
/// Reads frames and hands out only ones whose length is in bounds, whose checksum matches and
/// whose sequence number is the next expected one. Anything else throws <see cref="ProtocolException"/>
/// before a byte of the payload reaches the caller. Not thread-safe.
/// </summary>
public sealed class FrameReader
{
    private readonly Stream _stream;
    private readonly byte[] _buffer = new byte[FrameHeader.Size + FrameHeader.MaxPayload];
    private ulong _expected;

    public FrameReader(Stream stream)
    {
        _stream = stream;
    }

    public long BytesRead { get; private set; }

    public Frame Read()
    {
        ReadExactly(_buffer.AsSpan(0, FrameHeader.Size), "frame header");
        // Only the length is used before the checksum is verified (to know how much to read), and
        // only after a bounds check; every other field is interpreted once it is known to be intact,
        // so a damaged header reads as a checksum mismatch rather than as a bogus frame type.
        uint length = FrameHeader.ReadLength(_buffer);
        if (length > FrameHeader.MaxPayload)
        {
            throw new ProtocolException(ProtocolErrorKind.FrameTooLarge,
                $"frame {_expected} declares a {length}-byte payload; the limit is {FrameHeader.MaxPayload}");
        }
        int total = FrameHeader.Size + (int)length;
        ReadExactly(_buffer.AsSpan(FrameHeader.Size, (int)length), $"{DescribeType(_buffer[8])} payload ({length} bytes)");
        ulong expectedChecksum = BinaryPrimitives.ReadUInt64LittleEndian(_buffer);
        ulong actual = XxHash3.HashToUInt64(_buffer.AsSpan(8, total - 8));
        if (actual != expectedChecksum)
        {
            throw new ProtocolException(ProtocolErrorKind.ChecksumMismatch,
                $"checksum mismatch in frame {_expected} ({DescribeType(_buffer[8])}, {length} bytes): expected {expectedChecksum:x16}, computed {actual:x16}");
        }
        FrameHeader h = FrameHeader.Read(_buffer);
        if (!Enum.IsDefined(h.Type))
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"frame {_expected} has unknown type {(byte)h.Type}");
        }
        if (h.Flags != 0)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"frame {_expected} has flags 0x{h.Flags:x2}; v1 defines none");
        }
        if (h.Sequence != _expected)
        {
            throw new ProtocolException(ProtocolErrorKind.BadSequence, $"frame sequence {h.Sequence} where {_expected} was expected");
        }
        _expected++;
        BytesRead += total;
        return new Frame(h.Type, h.Sequence, _buffer.AsSpan(FrameHeader.Size, (int)length));
    }

    /// <summary>A type byte for messages, before it is known to be valid.</summary>
    private static string DescribeType(byte type) =>
        Enum.IsDefined((FrameType)type) ? ((FrameType)type).ToString() : $"type {type}";

    private void ReadExactly(Span<byte> target, string what)
    {
        int got = 0;
        while (got < target.Length)
        {
            int n = _stream.Read(target[got..]);
            if (n == 0)
            {
                bool boundary = got == 0 && what == "frame header";
                throw new ProtocolException(ProtocolErrorKind.Truncated,
                    boundary
                        ? $"stream ended before frame {_expected}"
                        : $"stream ended inside frame {_expected}: {what}, {got} of {target.Length} bytes")
                {
                    AtFrameBoundary = boundary,
                };
            }
            got += n;
        }
    }
}
