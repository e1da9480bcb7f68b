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
/// digest). Copies go page by page, as the destination does.
/// </summary>
internal static unsafe class MemcpyProbe
{
    /// <param name="FreshSeconds">Copy of every page of the source into a never-touched mapping.</param>
    /// <param name="TouchedSeconds">The same copy again into the same, now populated, mapping.</param>
    /// <param name="HashSeconds">XxHash3-64 of every source page.</param>
    /// <param name="FreshMinorFaults">Minor page faults the calling thread took during the fresh pass.</param>
    /// <param name="FreshSystemSeconds">Kernel CPU time of the calling thread during the fresh pass.</param>
    public sealed record Result(long Bytes, double FreshSeconds, double TouchedSeconds, double HashSeconds, long FreshMinorFaults, double FreshSystemSeconds)
    {
        public double FreshBytesPerSecond => Bytes / FreshSeconds;
        public double TouchedBytesPerSecond => Bytes / TouchedSeconds;
        public double HashBytesPerSecond => Bytes / HashSeconds;
        public double FreshMicrosecondsPerPage => FreshSeconds * 1e6 / (Bytes / PageSize.Bytes);
    }

    /// <summary>Runs the three passes over the populated pages of <paramref name="source"/> (which must not change meanwhile).</summary>
    public static Result Measure(GuestMemory source)
    {
        long[] pages = Enumerable.Range(0, checked((int)source.PageCount)).Select(p => (long)p).Where(source.IsPopulated).ToArray();
        long bytes = (long)pages.Length * PageSize.Bytes;
        if (bytes == 0)
        {
            throw new InvalidOperationException("source memory has no populated page to copy");
        }
        using var target = new AnonymousMapping(source.SizeBytes);
        byte* dst = target.Pointer;

        ThreadCpu cpu0 = ThreadCpu.Now();
        long t0 = Stopwatch.GetTimestamp();
        foreach (long p in pages)
        {
            source.PageView(p).CopyTo(new Span<byte>(dst + (p << PageSize.Shift), PageSize.Bytes));
        }
        long t1 = Stopwatch.GetTimestamp();
        ThreadCpu fresh = ThreadCpu.Now() - cpu0;
        foreach (long p in pages)
        {
            source.PageView(p).CopyTo(new Span<byte>(dst + (p << PageSize.Shift), PageSize.Bytes));
        }
        long t2 = Stopwatch.GetTimestamp();
        ulong fold = 0;
        foreach (long p in pages)
        {
            fold ^= XxHash3.HashToUInt64(source.PageView(p));
        }
        long t3 = Stopwatch.GetTimestamp();
        // Use the fold so the hashing cannot be optimised away, and check the copy while at it.
        ulong check = 0;
        foreach (long p in pages)
        {
            check ^= XxHash3.HashToUInt64(new ReadOnlySpan<byte>(dst + (p << PageSize.Shift), PageSize.Bytes));
        }
        if (check != fold)
        {
            throw new InvalidOperationException("memcpy probe: the copy differs from the source");
        }
        double f = Stopwatch.Frequency;
        return new Result(bytes, (t1 - t0) / f, (t2 - t1) / f, (t3 - t2) / f, fresh.MinorFaults, fresh.SystemSeconds);
    }
}
