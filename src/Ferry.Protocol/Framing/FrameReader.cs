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
        FrameHeader h = FrameHeader.Read(_buffer);
        if (h.Length > FrameHeader.MaxPayload)
        {
            throw new ProtocolException(ProtocolErrorKind.FrameTooLarge,
                $"frame {_expected} declares a {h.Length}-byte payload; the limit is {FrameHeader.MaxPayload}");
        }
        if (!Enum.IsDefined(h.Type))
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"frame {_expected} has unknown type {(byte)h.Type}");
        }
        if (h.Flags != 0)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"frame {_expected} has flags 0x{h.Flags:x2}; v1 defines none");
        }
        int total = FrameHeader.Size + (int)h.Length;
        ReadExactly(_buffer.AsSpan(FrameHeader.Size, (int)h.Length), $"{h.Type} payload ({h.Length} bytes)");
        ulong actual = XxHash3.HashToUInt64(_buffer.AsSpan(8, total - 8));
        if (actual != h.Checksum)
        {
            throw new ProtocolException(ProtocolErrorKind.ChecksumMismatch,
                $"checksum mismatch in frame {_expected} ({h.Type}, {h.Length} bytes): expected {h.Checksum:x16}, computed {actual:x16}");
        }
        if (h.Sequence != _expected)
        {
            throw new ProtocolException(ProtocolErrorKind.BadSequence, $"frame sequence {h.Sequence} where {_expected} was expected");
        }
        _expected++;
        BytesRead += total;
        return new Frame(h.Type, h.Sequence, _buffer.AsSpan(FrameHeader.Size, (int)h.Length));
    }

    private void ReadExactly(Span<byte> target, string what)
    {
        int got = 0;
        while (got < target.Length)
        {
            int n = _stream.Read(target[got..]);
            if (n == 0)
            {
                throw new ProtocolException(ProtocolErrorKind.Truncated,
                    got == 0 && what == "frame header"
                        ? $"stream ended before frame {_expected}"
                        : $"stream ended inside frame {_expected}: {what}, {got} of {target.Length} bytes");
            }
            got += n;
        }
    }
}
