using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using Ferry.Core.Paging;
using Ferry.Native;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;
using static Ferry.Bench.BenchFormat;

namespace Ferry.Bench;

/// <summary>
/// `install`: how fast the destination puts received pages into guest RAM, without the network.
/// Pages of random content are delivered the way <c>DestinationMigration</c> sees them: in batches
/// of <see cref="PageBatchCodec.MaxPagesPerBatch"/> pages laid out as in a received PageBatch frame
/// (24-byte frame header, 8-byte batch header, then 8-byte entry header + 4 KiB data per page), so
/// each page is copied from an 8-byte-aligned, cache-warm frame buffer. Staging a batch into that
/// buffer (the stand-in for the kernel's receive copy) is untimed; only the installs are timed:
/// <list type="bullet">
/// <item><b>copy</b>: <see cref="GuestMemory.InstallPage"/> per page into a fresh GuestMemory (the plain path: one store, then the copy).</item>
/// <item><b>uffd</b>: <see cref="PageInstaller.Add"/> per page and <see cref="PageInstaller.Flush"/> after each batch, into a fresh
/// GuestMemory with <see cref="GuestMemory.EnableFastInstall"/> (the destination's fast path: runs of up to 256 contiguous pages staged, then one UFFDIO_COPY).</item>
/// <item><b>touched</b>: InstallPage again into the copy pass's memory, now populated: the ceiling, with no fault at all.</item>
/// <item><b>populate</b> (opt-in, a what-if, not an engine path): <c>madvise(MADV_POPULATE_WRITE)</c> over the whole fresh
/// GuestMemory first (timed separately: the cost of the page allocations alone, in one call), then InstallPage per page into it.</item>
/// <item><b>thp</b> (opt-in what-if): <c>madvise(MADV_HUGEPAGE)</c> over the fresh GuestMemory, then InstallPage per page: one fault per 2 MiB
/// where the kernel can hand out a transparent huge page (THP is madvise-only on this kernel).</item>
/// </list>
/// Every repeat uses fresh GuestMemory; every pass is verified page by page against the source hashes (untimed).
/// </summary>
internal static class InstallBenchmark
{
    private static readonly long[] DefaultSizes = [256L << 20, 1L << 30];
    private const int BatchPages = PageBatchCodec.MaxPagesPerBatch;
    private const long WarmupBytes = 16L << 20;

    public sealed record Settings
    {
        public IReadOnlyList<long> SizesBytes { get; init; } = [];
        public IReadOnlyList<string> Orders { get; init; } = [];
        public IReadOnlyList<string> Modes { get; init; } = [];
        public int Repeats { get; init; }
        public int Seed { get; init; }
        public bool Warmup { get; init; }
        public int BatchPages { get; init; } = InstallBenchmark.BatchPages;
        public int PageInstallerRunPages { get; init; } = PageInstaller.RunPages;
    }

    public sealed record Pass
    {
        public long SizeBytes { get; init; }
        public string Order { get; init; } = "";
        public string Mode { get; init; } = "";
        public int Repeat { get; init; }
        public int PositionInRepeat { get; init; }
        public double Seconds { get; init; }
        public double BytesPerSecond { get; init; }
        public double MicrosecondsPerPage { get; init; }
        public double UserSecondsIncludingStaging { get; init; }
        public double SystemSeconds { get; init; }
        public long MinorFaults { get; init; }
        public double FaultsPerPage { get; init; }
        public string LoadAverage { get; init; } = "";
    }

    public sealed record CaseSummary
    {
        public long SizeBytes { get; init; }
        public string Order { get; init; } = "";
        public string Mode { get; init; } = "";
        public int Repeats { get; init; }
        public double BytesPerSecond { get; init; }
        public double MinBytesPerSecond { get; init; }
        public double MaxBytesPerSecond { get; init; }
        public double MicrosecondsPerPage { get; init; }
        public double FaultsPerPage { get; init; }
        public double SystemShare { get; init; }

        /// <summary>This mode's median rate ÷ the copy mode's, same size and order.</summary>
        public double OverCopy { get; init; }
    }

    public static int Execute(BenchArgs args)
    {
        var settings = new Settings
        {
            SizesBytes = args.BytesList("sizes", DefaultSizes),
            Orders = args.WordList("orders", "sequential,random", "sequential", "random"),
            Modes = args.WordList("modes", "copy,uffd", "copy", "uffd", "populate", "thp"),
            Repeats = args.Int("repeats", 3, 1, 50),
            Seed = args.Int("seed", 7, 0, int.MaxValue),
            Warmup = !args.Flag("no-warmup"),
        };
        string? outPath = args.String("out");
        args.RejectUnknown();
        if (settings.SizesBytes.Any(s => s % PageSize.Bytes != 0))
        {
            throw new BenchUsageException("--sizes: every size must be a whole number of 4 KiB pages");
        }
        PageInstallDecision uffd = PageInstallDecision.ForThisHost(Core.Migration.PageInstallChoice.Auto);
        if (settings.Modes.Contains("uffd") && !uffd.IsUffd)
        {
            throw new BenchUsageException($"uffd install is unavailable here ({uffd.Reason}); run with --modes copy");
        }

        var env = BenchEnvironment.Capture();
        DateTimeOffset startedAt = DateTimeOffset.Now;
        Console.WriteLine("# Ferry bench: install (destination page install rate, no network)");
        Console.WriteLine();
        Console.WriteLine($"- runtime: {env.Runtime}, {env.ProcessorCount} CPUs, tiered compilation {env.TieredCompilation}, load average {env.LoadAverageAtStart}");
        Console.WriteLine($"- sizes {string.Join(", ", settings.SizesBytes.Select(b => Mib(b) + " MiB"))}; orders {string.Join(", ", settings.Orders)}; " +
                          $"modes {string.Join(", ", settings.Modes)}{(settings.Modes.Contains("copy") ? " (+ touched, after copy)" : "")}; {settings.Repeats} repeats, fresh GuestMemory each; seed {settings.Seed}");
        Console.WriteLine($"- this host's auto page install: {uffd.Reason}");
        Console.WriteLine($"- warm-up: {(settings.Warmup ? $"every mode and order once on {Mib(WarmupBytes)} MiB, untimed" : "none")}");
        Console.WriteLine();

        byte[] frame = GC.AllocateUninitializedArray<byte>(FrameHeader.Size + PageBatchCodec.MaxPayloadFor(BatchPages), pinned: true);
        if (settings.Warmup)
        {
            Progress($"warm-up on {Mib(WarmupBytes)} MiB");
            using var w = new Content(WarmupBytes, settings.Seed);
            foreach (string order in settings.Orders)
            {
                foreach (string mode in settings.Modes)
                {
                    RunMode(w, w.Order(order), mode, frame, 0, 0, order, "");
                }
            }
        }

        var contents = new List<Content>();
        var passes = new List<Pass>();
        try
        {
            foreach (long size in settings.SizesBytes)
            {
                Progress($"generating {Mib(size)} MiB of random page content (untimed)");
                contents.Add(new Content(size, settings.Seed));
            }
            for (int r = 1; r <= settings.Repeats; r++)
            {
                foreach (Content c in contents)
                {
                    foreach (string order in settings.Orders)
                    {
                        // Rotate the mode order between repeats so drift hits all modes alike.
                        var modes = Enumerable.Range(0, settings.Modes.Count).Select(i => settings.Modes[(i + r - 1) % settings.Modes.Count]).ToList();
                        int position = 0;
                        foreach (string mode in modes)
                        {
                            string load = BenchEnvironment.LoadAverage();
                            List<Pass> got = RunMode(c, c.Order(order), mode, frame, r, ++position, order, load);
                            passes.AddRange(got);
                            Progress($"repeat {r}: {Mib(c.Bytes)} MiB {order}: " +
                                     string.Join(", ", got.Select(p => $"{p.Mode} {Gbs(p.BytesPerSecond)} GB/s ({p.MicrosecondsPerPage:0.00} µs/page, {p.FaultsPerPage:0.00} faults/page)")) +
                                     $"; load {load}");
                        }
                    }
                }
            }
        }
        finally
        {
            foreach (Content c in contents)
            {
                c.Dispose();
            }
        }

        List<CaseSummary> summaries = Summarise(passes, settings);
        Print(summaries, passes, settings);
        ResultFile.Publish("install", args, startedAt, env, settings, summaries, passes, outPath);
        return 0;
    }

    /// <summary>One mode on fresh memory: "copy" also yields the "touched" pass on the same memory.</summary>
    private static List<Pass> RunMode(Content content, long[] order, string mode, byte[] frame, int repeat, int position, string orderName, string load)
    {
        var result = new List<Pass>();
        using var memory = new GuestMemory(content.Bytes);
        PageInstaller? installer = null;
        if (mode == "uffd")
        {
            memory.EnableFastInstall();
            installer = new PageInstaller(memory);
        }
        if (mode == "thp")
        {
            Advise(memory, 14 /* MADV_HUGEPAGE */, "madvise(MADV_HUGEPAGE)");
        }
        if (mode == "populate")
        {
            var (populateSeconds, populateCpu) = Populate(memory);
            result.Add(ToPass(content, orderName, "populate: madvise only", repeat, position, populateSeconds, populateCpu, load));
        }
        var (seconds, cpu) = InstallAll(content, order, memory, installer, frame);
        content.Verify(memory, mode);
        result.Add(ToPass(content, orderName, mode == "populate" ? "populate: copy after madvise" : mode, repeat, position, seconds, cpu, load));
        if (mode == "copy")
        {
            var (touchedSeconds, touchedCpu) = InstallAll(content, order, memory, null, frame);
            content.Verify(memory, "touched");
            result.Add(ToPass(content, orderName, "touched", repeat, position, touchedSeconds, touchedCpu, load));
        }
        // Dispose unregisters the uffd range (if any) and unmaps.
        return result;
    }

    private static unsafe void Advise(GuestMemory memory, int advice, string what)
    {
        if (Ferry.Native.Interop.Libc.madvise(memory.Mapping.Pointer, (nuint)memory.SizeBytes, advice) != 0)
        {
            throw new NativeCallException(what, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }
    }

    /// <summary>MADV_POPULATE_WRITE (Linux 5.14+) over all of guest RAM: every page allocated and mapped writable in one call.</summary>
    private static unsafe (double Seconds, ThreadCpu Cpu) Populate(GuestMemory memory)
    {
        const int MADV_POPULATE_WRITE = 23;
        ThreadCpu cpu0 = ThreadCpu.Now();
        long t0 = Stopwatch.GetTimestamp();
        if (Ferry.Native.Interop.Libc.madvise(memory.Mapping.Pointer, (nuint)memory.SizeBytes, MADV_POPULATE_WRITE) != 0)
        {
            throw new NativeCallException("madvise(MADV_POPULATE_WRITE)", System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        return (seconds, ThreadCpu.Now() - cpu0);
    }

    private static Pass ToPass(Content c, string order, string mode, int repeat, int position, double seconds, ThreadCpu cpu, string load) => new()
    {
        SizeBytes = c.Bytes,
        Order = order,
        Mode = mode,
        Repeat = repeat,
        PositionInRepeat = position,
        Seconds = seconds,
        BytesPerSecond = c.Bytes / seconds,
        MicrosecondsPerPage = seconds * 1e6 / c.Pages,
        UserSecondsIncludingStaging = cpu.UserSeconds,
        SystemSeconds = cpu.SystemSeconds,
        MinorFaults = cpu.MinorFaults,
        FaultsPerPage = cpu.MinorFaults / (double)c.Pages,
        LoadAverage = load,
    };

    /// <summary>
    /// Delivers every page in <paramref name="order"/>, a batch at a time: stages the batch into the
    /// frame buffer (untimed), then installs it (timed) as DestinationMigration does. CPU time covers
    /// the whole pass; the staging copies are between touched buffers, so they add user time only.
    /// </summary>
    private static (double Seconds, ThreadCpu Cpu) InstallAll(Content content, long[] order, GuestMemory memory, PageInstaller? installer, byte[] frame)
    {
        const int stride = PageBatchCodec.EntryHeaderSize + PageSize.Bytes;
        const int firstData = FrameHeader.Size + PageBatchCodec.HeaderSize + PageBatchCodec.EntryHeaderSize;
        long ticks = 0;
        ThreadCpu cpu0 = ThreadCpu.Now();
        for (int start = 0; start < order.Length; start += BatchPages)
        {
            int n = Math.Min(BatchPages, order.Length - start);
            for (int i = 0; i < n; i++)
            {
                content.Page(order[start + i]).CopyTo(frame.AsSpan(firstData + i * stride, PageSize.Bytes));
            }
            long t0 = Stopwatch.GetTimestamp();
            if (installer is not null)
            {
                for (int i = 0; i < n; i++)
                {
                    installer.Add(order[start + i], frame.AsSpan(firstData + i * stride, PageSize.Bytes));
                }
                installer.Flush();
            }
            else
            {
                for (int i = 0; i < n; i++)
                {
                    memory.InstallPage(order[start + i], frame.AsSpan(firstData + i * stride, PageSize.Bytes));
                }
            }
            ticks += Stopwatch.GetTimestamp() - t0;
        }
        ThreadCpu cpu = ThreadCpu.Now() - cpu0;
        return (ticks / (double)Stopwatch.Frequency, cpu);
    }

    private static List<CaseSummary> Summarise(List<Pass> passes, Settings s)
    {
        var list = new List<CaseSummary>();
        var modes = new List<string>();
        foreach (string m in s.Modes)
        {
            modes.AddRange(m switch
            {
                "copy" => ["copy", "touched"],
                "populate" => ["populate: madvise only", "populate: copy after madvise"],
                _ => [m],
            });
        }
        foreach (long size in s.SizesBytes)
        {
            foreach (string order in s.Orders)
            {
                double copy = Stats.Median(passes.Where(p => p.SizeBytes == size && p.Order == order && p.Mode == "copy").Select(p => p.BytesPerSecond));
                foreach (string mode in modes)
                {
                    var ps = passes.Where(p => p.SizeBytes == size && p.Order == order && p.Mode == mode).ToList();
                    double rate = Stats.Median(ps.Select(p => p.BytesPerSecond));
                    list.Add(new CaseSummary
                    {
                        SizeBytes = size,
                        Order = order,
                        Mode = mode,
                        Repeats = ps.Count,
                        BytesPerSecond = rate,
                        MinBytesPerSecond = Stats.Min(ps.Select(p => p.BytesPerSecond)),
                        MaxBytesPerSecond = Stats.Max(ps.Select(p => p.BytesPerSecond)),
                        MicrosecondsPerPage = Stats.Median(ps.Select(p => p.MicrosecondsPerPage)),
                        FaultsPerPage = Stats.Median(ps.Select(p => p.FaultsPerPage)),
                        SystemShare = Stats.Median(ps.Select(p => p.SystemSeconds / p.Seconds)),
                        OverCopy = rate / copy,
                    });
                }
            }
        }
        return list;
    }

    private static void Print(List<CaseSummary> summaries, List<Pass> passes, Settings s)
    {
        var t = new MarkdownTable("size", "order", "mode", "GB/s median", "min–max GB/s", "µs/page", "faults/page", "kernel share", "× copy");
        foreach (CaseSummary c in summaries)
        {
            t.Add($"{Mib(c.SizeBytes)} MiB", c.Order, c.Mode == "touched" ? "touched (ceiling)" : c.Mode, $"**{Gbs(c.BytesPerSecond)}**",
                $"{Gbs(c.MinBytesPerSecond)}–{Gbs(c.MaxBytesPerSecond)}", c.MicrosecondsPerPage.ToString("0.00", CultureInfo.InvariantCulture),
                c.FaultsPerPage.ToString("0.00", CultureInfo.InvariantCulture), P(c.SystemShare), F(c.OverCopy));
        }
        Console.WriteLine($"## Install rate, median of {s.Repeats} repeats");
        Console.WriteLine();
        Console.WriteLine(t);
        Console.WriteLine("GB = 10^9 bytes of page content installed ÷ time spent installing (the untimed staging of each batch into the frame buffer excluded). " +
                          "copy = GuestMemory.InstallPage per page into fresh memory; uffd = PageInstaller (runs of ≤ 256 contiguous pages, UFFDIO_COPY each, flushed per batch) " +
                          "into fresh MISSING-registered memory; touched = InstallPage again into the copy pass's now-populated memory. " +
                          "faults/page = minor faults of the installing thread ÷ pages; kernel share = the thread's system CPU time ÷ install time " +
                          "(10 ms resolution). × copy = rate ÷ the copy mode's rate for the same size and order.");
        Console.WriteLine();
        Console.WriteLine($"> {BenchEnvironment.MachineCaveat}");
        Console.WriteLine();
        var all = new MarkdownTable("repeat", "size", "order", "mode", "position", "GB/s", "µs/page", "faults/page", "sys s", "load avg");
        foreach (Pass p in passes.OrderBy(p => p.SizeBytes).ThenBy(p => p.Order).ThenBy(p => p.Mode).ThenBy(p => p.Repeat))
        {
            all.Add(p.Repeat.ToString(CultureInfo.InvariantCulture), $"{Mib(p.SizeBytes)} MiB", p.Order, p.Mode, p.PositionInRepeat.ToString(CultureInfo.InvariantCulture),
                Gbs(p.BytesPerSecond), p.MicrosecondsPerPage.ToString("0.00", CultureInfo.InvariantCulture), F(p.FaultsPerPage), F(p.SystemSeconds), p.LoadAverage);
        }
        Console.WriteLine("## All passes");
        Console.WriteLine();
        Console.WriteLine(all);
    }

    /// <summary>Random page content in a populated mapping, its per-page hashes, and the two delivery orders.</summary>
    private sealed class Content : IDisposable
    {
        private readonly AnonymousMapping _data;
        private readonly ulong[] _hashes;
        private readonly long[] _sequential;
        private readonly long[] _random;

        public Content(long bytes, int seed)
        {
            Bytes = bytes;
            Pages = bytes / PageSize.Bytes;
            _data = new AnonymousMapping(bytes);
            var rng = new Random(seed);
            const int chunk = 1 << 20;
            for (long off = 0; off < bytes; off += chunk)
            {
                rng.NextBytes(_data.GetSpan(off, (int)Math.Min(chunk, bytes - off)));
            }
            _hashes = new ulong[Pages];
            for (long p = 0; p < Pages; p++)
            {
                _hashes[p] = XxHash3.HashToUInt64(Page(p));
            }
            _sequential = new long[Pages];
            for (long p = 0; p < Pages; p++)
            {
                _sequential[p] = p;
            }
            _random = (long[])_sequential.Clone();
            new Random(seed + 1).Shuffle(_random);
        }

        public long Bytes { get; }

        public long Pages { get; }

        public ReadOnlySpan<byte> Page(long page) => _data.GetReadOnlySpan(page << PageSize.Shift, PageSize.Bytes);

        public long[] Order(string name) => name == "random" ? _random : _sequential;

        /// <summary>Throws unless every page of <paramref name="memory"/> holds the content delivered.</summary>
        public void Verify(GuestMemory memory, string what)
        {
            for (long p = 0; p < Pages; p++)
            {
                if (!memory.IsPopulated(p) || memory.HashPage(p) != _hashes[p])
                {
                    throw new InvalidOperationException($"install ({what}): page {p} does not hold what was delivered");
                }
            }
        }

        public void Dispose() => _data.Dispose();
    }
}
