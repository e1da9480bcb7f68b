using System.Diagnostics;
using System.IO.Hashing;
using Ferry.Core.Paging;
using Ferry.Native;
using Ferry.Vm.Memory;

namespace Ferry.Bench;

/// <summary>
/// The destination-side costs that bound a migration's throughput, measured on the same bytes:
/// installing pages into never-touched anonymous memory (what <c>GuestMemory.InstallPage</c> does
/// on a fresh destination: one page fault per 4 KiB page) against installing into memory that is
/// already populated, plus the XxHash3 per page that each end runs twice (frame checksum and
/// digest). Copies go page by page, as the destination does. Another pass copies into a second
/// fresh mapping after a one-byte store per page, to show what the double fault costs (a managed
/// 4 KiB copy into a never-touched page takes two minor faults on this machine, as if the
/// destination were read before it is written; a store takes one and leaves the page writable).
/// </summary>
internal static unsafe class MemcpyProbe
{
    /// <param name="FreshSeconds">Copy of every page of the source into a never-touched mapping.</param>
    /// <param name="TouchedSeconds">The same copy again into the same, now populated, mapping.</param>
    /// <param name="HashSeconds">XxHash3-64 of every source page.</param>
    /// <param name="FreshMinorFaults">Minor page faults the calling thread took during the fresh pass.</param>
    /// <param name="FreshSystemSeconds">Kernel CPU time of the calling thread during the fresh pass.</param>
    /// <param name="StoreFirstSeconds">Copy into another never-touched mapping, each page first written with one byte.</param>
    /// <param name="StoreFirstMinorFaults">Minor page faults during that pass.</param>
    public sealed record Result(long Bytes, double FreshSeconds, double TouchedSeconds, double HashSeconds, long FreshMinorFaults, double FreshSystemSeconds,
        double StoreFirstSeconds, long StoreFirstMinorFaults)
    {
        public long Pages => Bytes / PageSize.Bytes;
        public double StoreFirstBytesPerSecond => Bytes / StoreFirstSeconds;
        public double FreshFaultsPerPage => FreshMinorFaults / (double)Pages;
        public double StoreFirstFaultsPerPage => StoreFirstMinorFaults / (double)Pages;
        public double FreshBytesPerSecond => Bytes / FreshSeconds;
        public double TouchedBytesPerSecond => Bytes / TouchedSeconds;
        public double HashBytesPerSecond => Bytes / HashSeconds;
        public double FreshMicrosecondsPerPage => FreshSeconds * 1e6 / (Bytes / PageSize.Bytes);
    }

    /// <summary>Pages per interleaving block (2 MiB).</summary>
    private const int BlockPages = 512;

    /// <summary>
    /// Runs the passes over the populated pages of <paramref name="source"/> (which must not change
    /// meanwhile). The two fresh passes are interleaved block by block (2 MiB each, alternating which
    /// goes first), because how fast fresh memory comes depends on what the host has at hand at that
    /// moment: run one after the other, whichever went first was faster.
    /// </summary>
    public static Result Measure(GuestMemory source)
    {
        long[] pages = Enumerable.Range(0, checked((int)source.PageCount)).Select(p => (long)p).Where(source.IsPopulated).ToArray();
        long bytes = (long)pages.Length * PageSize.Bytes;
        if (bytes == 0)
        {
            throw new InvalidOperationException("source memory has no populated page to copy");
        }
        using var plain = new AnonymousMapping(source.SizeBytes);
        using var storeFirst = new AnonymousMapping(source.SizeBytes);

        var fresh = new Pass();
        var stored = new Pass();
        for (int start = 0, block = 0; start < pages.Length; start += BlockPages, block++)
        {
            ReadOnlySpan<long> slice = pages.AsSpan(start, Math.Min(BlockPages, pages.Length - start));
            if (block % 2 == 0)
            {
                fresh.Add(Copy(source, slice, plain.Pointer, storeFirst: false));
                stored.Add(Copy(source, slice, storeFirst.Pointer, storeFirst: true));
            }
            else
            {
                stored.Add(Copy(source, slice, storeFirst.Pointer, storeFirst: true));
                fresh.Add(Copy(source, slice, plain.Pointer, storeFirst: false));
            }
        }
        (double touchedSeconds, _) = Copy(source, pages, plain.Pointer, storeFirst: false);

        long t2 = Stopwatch.GetTimestamp();
        ulong fold = 0;
        foreach (long p in pages)
        {
            fold ^= XxHash3.HashToUInt64(source.PageView(p));
        }
        double hashSeconds = Stopwatch.GetElapsedTime(t2).TotalSeconds;
        // Use the fold so the hashing cannot be optimised away, and check both copies while at it.
        ulong a = 0;
        ulong b = 0;
        foreach (long p in pages)
        {
            a ^= XxHash3.HashToUInt64(new ReadOnlySpan<byte>(plain.Pointer + (p << PageSize.Shift), PageSize.Bytes));
            b ^= XxHash3.HashToUInt64(new ReadOnlySpan<byte>(storeFirst.Pointer + (p << PageSize.Shift), PageSize.Bytes));
        }
        if (a != fold || b != fold)
        {
            throw new InvalidOperationException("memcpy probe: a copy differs from the source");
        }
        return new Result(bytes, fresh.Seconds, touchedSeconds, hashSeconds, fresh.Cpu.MinorFaults, fresh.Cpu.SystemSeconds,
            stored.Seconds, stored.Cpu.MinorFaults);
    }

    private sealed class Pass
    {
        public double Seconds { get; private set; }
        public ThreadCpu Cpu { get; private set; }

        public void Add((double Seconds, ThreadCpu Cpu) part)
        {
            Seconds += part.Seconds;
            Cpu = new ThreadCpu(Cpu.UserSeconds + part.Cpu.UserSeconds, Cpu.SystemSeconds + part.Cpu.SystemSeconds, Cpu.MinorFaults + part.Cpu.MinorFaults);
        }
    }

    private static (double Seconds, ThreadCpu Cpu) Copy(GuestMemory source, ReadOnlySpan<long> pages, byte* dst, bool storeFirst)
    {
        ThreadCpu cpu0 = ThreadCpu.Now();
        long t0 = Stopwatch.GetTimestamp();
        foreach (long p in pages)
        {
            byte* page = dst + (p << PageSize.Shift);
            if (storeFirst)
            {
                *page = 0;
            }
            source.PageView(p).CopyTo(new Span<byte>(page, PageSize.Bytes));
        }
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        return (seconds, ThreadCpu.Now() - cpu0);
    }
}
