using System.Runtime.CompilerServices;

namespace Ferry.Vm.Programs;

/// <summary>SplitMix64 over a state word held in a guest register.</summary>
internal static class SplitMix64
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Next(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform double in [0, 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double NextDouble(ref ulong state) => (Next(ref state) >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, n) by multiply-shift (bias below 2^-32 for our sizes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long NextBelow(ref ulong state, long n) => (long)(((UInt128)Next(ref state) * (ulong)n) >> 64);
}
