using System.Buffers.Binary;

namespace Ferry.Protocol.Messages;

/// <summary>End of a round: <c>u32 round, u32 0, u64 pages sent in it</c> (16 bytes).</summary>
public readonly record struct RoundEnd(int Round, long Pages)
{
    public const int Size = 16;

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)Round);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], (ulong)Pages);
    }

    public static RoundEnd Read(ReadOnlySpan<byte> b)
    {
        Expect(b, Size, "round end");
        return new RoundEnd((int)BinaryPrimitives.ReadUInt32LittleEndian(b), (long)BinaryPrimitives.ReadUInt64LittleEndian(b[8..]));
    }

    internal static void Expect(ReadOnlySpan<byte> b, int size, string what)
    {
        if (b.Length != size)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"{what} payload must be {size} bytes, got {b.Length}");
        }
    }
}

/// <summary>One vCPU's registers: <c>u32 index, u32 length, bytes[length]</c>.</summary>
public static class VcpuStateMessage
{
    public const int HeaderSize = 8;

    public static int Write(Span<byte> b, int index, ReadOnlySpan<byte> registers)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)index);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)registers.Length);
        registers.CopyTo(b[HeaderSize..]);
        return HeaderSize + registers.Length;
    }

    public static int Read(ReadOnlySpan<byte> b, int expectedLength, int vcpuCount, out ReadOnlySpan<byte> registers)
    {
        if (b.Length < HeaderSize)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, "vCPU state frame shorter than its header");
        }
        uint index = BinaryPrimitives.ReadUInt32LittleEndian(b);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(b[4..]);
        if (index >= (uint)vcpuCount)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"vCPU state for vCPU {index}; the VM has {vcpuCount}");
        }
        if (length != expectedLength || b.Length != HeaderSize + expectedLength)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"vCPU state of {length} bytes; expected {expectedLength}");
        }
        registers = b[HeaderSize..];
        return (int)index;
    }
}

/// <summary>Switchover: <c>u64 memory digest, u64 pages sent in total, u64 guest pages, u32 vCPUs, u32 0</c> (32 bytes).</summary>
public readonly record struct Switchover(ulong Digest, long PagesSent, long GuestPages, int Vcpus)
{
    public const int Size = 32;

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Digest);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], (ulong)PagesSent);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], (ulong)GuestPages);
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], (uint)Vcpus);
        BinaryPrimitives.WriteUInt32LittleEndian(b[28..], 0);
    }

    public static Switchover Read(ReadOnlySpan<byte> b)
    {
        RoundEnd.Expect(b, Size, "switchover");
        return new Switchover(
            BinaryPrimitives.ReadUInt64LittleEndian(b),
            (long)BinaryPrimitives.ReadUInt64LittleEndian(b[8..]),
            (long)BinaryPrimitives.ReadUInt64LittleEndian(b[16..]),
            (int)BinaryPrimitives.ReadUInt32LittleEndian(b[24..]));
    }
}
