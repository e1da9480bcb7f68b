using System.Buffers.Binary;

namespace Ferry.Protocol.Framing;

/// <summary>
/// The 24-byte frame header, little-endian:
/// <code>
///  0  u64 checksum   XxHash3-64 (seed 0) of bytes 8 .. 24+length (rest of header + payload)
///  8  u8  type
///  9  u8  flags      0 in v1
/// 10  u16 reserved   0
/// 12  u32 length     payload bytes, at most MaxPayload
/// 16  u64 sequence   0, 1, 2 … per direction; a gap or repeat is an error
/// </code>
/// The checksum comes first so that the bytes it covers are contiguous.
/// </summary>
public readonly record struct FrameHeader(ulong Checksum, FrameType Type, byte Flags, uint Length, ulong Sequence)
{
    public const int Size = 24;

    /// <summary>Largest payload accepted: 256 raw pages plus their entry headers, with room to spare.</summary>
    public const int MaxPayload = 4 << 20;

    /// <summary>The payload length field alone: the one field a reader needs before it can verify the checksum.</summary>
    public static uint ReadLength(ReadOnlySpan<byte> b) => BinaryPrimitives.ReadUInt32LittleEndian(b[12..]);

    public static FrameHeader Read(ReadOnlySpan<byte> b)
    {
        ushort reserved = BinaryPrimitives.ReadUInt16LittleEndian(b[10..]);
        if (reserved != 0)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"frame header reserved field is {reserved}, expected 0");
        }
        return new FrameHeader(
            BinaryPrimitives.ReadUInt64LittleEndian(b),
            (FrameType)b[8],
            b[9],
            BinaryPrimitives.ReadUInt32LittleEndian(b[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(b[16..]));
    }

    /// <summary>Writes every field but the checksum, which is computed over what follows it.</summary>
    public static void WriteWithoutChecksum(Span<byte> b, FrameType type, uint length, ulong sequence)
    {
        b[8] = (byte)type;
        b[9] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(b[10..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], length);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], sequence);
    }
}
