using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Ferry.Vm.Cpu;

/// <summary>Sixteen general-purpose 64-bit registers.</summary>
[InlineArray(Count)]
public struct RegisterFile
{
    public const int Count = 16;
    private ulong _r0;
}

/// <summary>
/// A vCPU's register file: fixed size and blittable, so it crosses the wire as its raw bytes.
/// Guest programs keep all their state here and in guest RAM, which is what lets a migrated VM
/// continue exactly where it stopped.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct VcpuState
{
    public const int SizeInBytes = RegisterFile.Count * 8 + 4 * 8;

    public RegisterFile R;

    /// <summary>Program counter: the program's own phase marker.</summary>
    public ulong Pc;

    /// <summary>Operations completed (page writes for memtouch): the throughput counter.</summary>
    public ulong Ops;

    public ulong Flags;

    public ulong Reserved;

    public static void Write(in VcpuState state, Span<byte> destination) =>
        MemoryMarshal.Write(destination, in state);

    public static VcpuState Read(ReadOnlySpan<byte> source) =>
        source.Length == SizeInBytes
            ? MemoryMarshal.Read<VcpuState>(source)
            : throw new ArgumentException($"vCPU state must be {SizeInBytes} bytes, got {source.Length}", nameof(source));
}
