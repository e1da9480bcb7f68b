using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace Ferry.Vm.Memory;

/// <summary>
/// A digest of guest RAM kept incrementally: one 64-bit XxHash3 per page, updated as pages are
/// sent or installed, folded into one value by hashing the table (2 MiB per GiB of RAM, well
/// under a millisecond). This keeps the switchover comparison out of the downtime.
/// </summary>
public sealed class MemoryDigest
{
    private readonly ulong[] _pageHashes;

    public MemoryDigest(long pageCount)
    {
        _pageHashes = new ulong[pageCount];
        Array.Fill(_pageHashes, GuestMemory.ZeroPageHash);
    }

    public long PageCount => _pageHashes.Length;

    public void Set(long page, ulong hash) => _pageHashes[page] = hash;

    public ulong Get(long page) => _pageHashes[page];

    public ulong Compute() => XxHash3.HashToUInt64(MemoryMarshal.AsBytes(_pageHashes.AsSpan()));

    public static string Format(ulong digest) => digest.ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
}
