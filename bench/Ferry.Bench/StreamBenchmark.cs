using System.Diagnostics;
using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Ferry.Core.Tracking;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;
using static Ferry.Bench.BenchFormat;

namespace Ferry.Bench;

/// <summary>
/// `stream`: how close an unthrottled pre-copy migration of an idle VM full of random bytes gets
/// to what plain TCP over loopback moves, per destination page-install backend, and where the
/// time goes. Each repeat fills one VM, then migrates it once per requested backend (the order
/// rotates between repeats; the paused source is resumed between migrations, its RAM unchanged),
/// measuring raw TCP over the same byte count after each migration, and optionally runs the page
/// copy probe on the same pages.
/// </summary>
internal static class StreamBenchmark
{
    public const double TargetRatio = 0.9;
    private const long WarmupMemory = 64L << 20;
    private static readonly TimeSpan MigrationTimeout = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan TcpTimeout = TimeSpan.FromMinutes(5);

    public sealed record Settings
    {
        public long MemoryBytes { get; init; }
        public int Repeats { get; init; }
        public bool Warmup { get; init; }
        public bool Probe { get; init; }
        public IReadOnlyList<string> PageInstall { get; init; } = [];
        public string DirtyLog { get; init; } = "";
        public int SourceSendBufferBytes { get; init; } = LoopbackMigration.SourceSendBuffer;
        public int DestinationReceiveBufferBytes { get; init; } = LoopbackMigration.DestinationReceiveBuffer;

        /// <summary>Raw TCP into fresh memory variants run after each migration (plain, and uffd when the host allows it).</summary>
        public IReadOnlyList<string> FreshMemoryVariants { get; init; } = [];

        /// <summary>Why the uffd fresh-memory variant was skipped; null when it ran.</summary>
        public string? FreshMemoryUffdSkipped { get; init; }
    }

    /// <summary>One migration within a repeat.</summary>
    public sealed record Migration
    {
        public int Repeat { get; init; }
        public int PositionInRepeat { get; init; }
        public string PageInstallRequested { get; init; } = "";
        public string PageInstallBackend { get; init; } = "";
        public string PageInstallReason { get; init; } = "";
        public string DirtyLogBackend { get; init; } = "";
        public string DirtyLogReason { get; init; } = "";
        public long WireBytes { get; init; }
        public long PagesSent { get; init; }
        public double MigrationMs { get; init; }
        public double MigrationWallMs { get; init; }
        public double MigrationBytesPerSecond { get; init; }
        public long Round1WireBytes { get; init; }
        public double Round1Ms { get; init; }
        public double Round1BytesPerSecond { get; init; }
        public double PreparationMs { get; init; }
        public double DowntimeMs { get; init; }
        public double FinalPagesMs { get; init; }
        public double StateMs { get; init; }
        public double SwitchoverMs { get; init; }
        public double DestinationResumeMs { get; init; }
        public int Rounds { get; init; }
        public string StopReason { get; init; } = "";
        public double RawTcpBytesPerSecond { get; init; }
        public double Ratio { get; init; }
        public double Round1Ratio { get; init; }

        /// <summary>Fresh-memory baseline of the same install backend: plain for copy, uffd for uffd.</summary>
        public string FreshMemoryVariant { get; init; } = "";

        /// <summary>Mean of the repeat's raw TCP into fresh memory runs of <see cref="FreshMemoryVariant"/>.</summary>
        public double FreshMemoryBytesPerSecond { get; init; }

        /// <summary>Migration GB/s ÷ <see cref="FreshMemoryBytesPerSecond"/>.</summary>
        public double FreshMemoryRatio { get; init; }
        public double DestinationFaultsPerPage { get; init; }
        public string LoadAverage { get; init; } = "";
        public LoopbackMigration.SideCosts Sides { get; init; } = new();
        public MigrationReport? Report { get; init; }
    }

    /// <summary>One repeat: one filled VM, one migration per backend, raw TCP after each, the probe.</summary>
    public sealed record Repeat
    {
        public int Number { get; init; }
        public double FillSeconds { get; init; }
        public long WireBytes { get; init; }
        public IReadOnlyList<RawTcp.Result> RawTcp { get; init; } = [];

        /// <summary>Mean of this repeat's raw TCP rates: the baseline every migration of the repeat is divided by.</summary>
        public double RawTcpBytesPerSecond { get; init; }

        /// <summary>Raw TCP into fresh memory, each variant after each migration (order alternating).</summary>
        public IReadOnlyList<RawTcpIntoFreshMemory.Result> FreshMemory { get; init; } = [];

        /// <summary>Mean of this repeat's plain fresh-memory rates: the baseline of its copy migrations.</summary>
        public double FreshPlainBytesPerSecond { get; init; }

        /// <summary>Mean of this repeat's uffd fresh-memory rates: the baseline of its uffd migrations.</summary>
        public double FreshUffdBytesPerSecond { get; init; }
        public string LoadAverage { get; init; } = "";
        public MemcpyProbe.Result? Probe { get; init; }
        public IReadOnlyList<Migration> Migrations { get; init; } = [];
    }

    public static int Execute(BenchArgs args)
    {
        IReadOnlyList<PageInstallChoice> installs = args.PageInstallList("page-install", "auto");
        DirtyLogChoice dirtyLog = args.DirtyLog();
        var settings = new Settings
        {
            MemoryBytes = args.Bytes("memory", 1L << 30),
            Repeats = args.Int("repeats", 3, 1, 50),
            Warmup = !args.Flag("no-warmup"),
            Probe = !args.Flag("no-probe"),
            PageInstall = installs.Select(BenchArgs.Name).ToArray(),
            DirtyLog = BenchArgs.Name(dirtyLog),
        };
        string? outPath = args.String("out");
        args.RejectUnknown();
        string? uffdSkipped = RawTcpIntoFreshMemory.UffdUnavailableReason();
        settings = settings with
        {
            FreshMemoryVariants = uffdSkipped is null ? [RawTcpIntoFreshMemory.Plain, RawTcpIntoFreshMemory.Uffd] : [RawTcpIntoFreshMemory.Plain],
            FreshMemoryUffdSkipped = uffdSkipped,
        };

        var env = BenchEnvironment.Capture();
        DateTimeOffset startedAt = DateTimeOffset.Now;
        Console.WriteLine($"# Ferry bench: stream ({Mib(settings.MemoryBytes)} MiB idle VM, random pages, pre-copy, no bandwidth limit, loopback TCP)");
        Console.WriteLine();
        Console.WriteLine($"- runtime: {env.Runtime}, {env.ProcessorCount} CPUs, tiered compilation {env.TieredCompilation}, load average {env.LoadAverageAtStart}");
        Console.WriteLine($"- requested: --page-install {string.Join(',', settings.PageInstall)} (one migration each per repeat, order rotating), --dirty-log {settings.DirtyLog}");
        Console.WriteLine($"- sockets: NoDelay, SO_SNDBUF {settings.SourceSendBufferBytes >> 20} MiB at the source, SO_RCVBUF {settings.DestinationReceiveBufferBytes >> 20} MiB " +
                          "at the destination (the agent's settings), the same for raw TCP");
        Console.WriteLine($"- repeats: {settings.Repeats}; warm-up: {(settings.Warmup ? $"one {Mib(WarmupMemory)} MiB migration per backend + raw TCP before timing" : "none")}; " +
                          $"page copy probe: {(settings.Probe ? "yes" : "no (--no-probe)")}");
        Console.WriteLine($"- raw TCP into fresh memory after each migration: {string.Join(", ", settings.FreshMemoryVariants)}" +
                          (uffdSkipped is null ? "" : $" (uffd skipped: {uffdSkipped})"));
        Console.WriteLine();

        if (settings.Warmup)
        {
            long w0 = Stopwatch.GetTimestamp();
            Progress($"warm-up: {Mib(WarmupMemory)} MiB migration per backend and raw TCP");
            using (VirtualMachine vm = CreateFilled(WarmupMemory, out _))
            {
                vm.Start();
                foreach (PageInstallChoice install in installs)
                {
                    if (vm.State == VmRunState.Paused)
                    {
                        vm.Resume();
                    }
                    LoopbackMigration.Result w = LoopbackMigration.Run(vm, Options(dirtyLog), install, "bench-stream-warmup", MigrationTimeout);
                    Require(w, "warm-up");
                }
            }
            RawTcp.Measure(WarmupMemory, TcpTimeout);
            foreach (string variant in settings.FreshMemoryVariants)
            {
                RawTcpIntoFreshMemory.Measure(variant, WarmupMemory, WarmupMemory, TcpTimeout);
            }
            Progress($"warm-up done in {Stopwatch.GetElapsedTime(w0).TotalSeconds:0.0} s");
        }

        var repeats = new List<Repeat>();
        for (int r = 1; r <= settings.Repeats; r++)
        {
            repeats.Add(RunOnce(r, settings, installs, dirtyLog));
        }

        var summaries = settings.PageInstall.Select(p => Summarise(p, repeats)).ToList();
        Print(repeats, summaries, settings);

        ResultFile.Publish("stream", args, startedAt, env, settings, summaries, repeats, outPath);
        return 0;
    }

    private static MigrationOptions Options(DirtyLogChoice dirtyLog) => new()
    {
        Technique = MigrationTechnique.PreCopy,
        MaxBandwidthBytesPerSecond = 0,
        DirtyLog = dirtyLog,
    };

    private static VirtualMachine CreateFilled(long memory, out double fillSeconds)
    {
        long t0 = Stopwatch.GetTimestamp();
        var vm = VirtualMachine.Create(new VmConfig
        {
            Name = "bench-stream",
            MemoryBytes = memory,
            Vcpus = 1,
            // The filler seeds from the workload; idle has a fixed seed, so every repeat moves the same bytes.
            Workload = "idle",
            Fill = RamFill.Random,
        });
        fillSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        return vm;
    }

    private static void Require(LoopbackMigration.Result m, string what)
    {
        MigrationReport rep = m.Report;
        if (rep.Outcome != MigrationOutcome.Completed || !rep.Verification.DigestsMatch)
        {
            throw new InvalidOperationException($"{what}: migration did not complete cleanly: outcome {rep.Outcome}, error {rep.Error ?? m.DestinationError ?? "none"}");
        }
    }

    private static Repeat RunOnce(int repeat, Settings s, IReadOnlyList<PageInstallChoice> installs, DirtyLogChoice dirtyLog)
    {
        Progress($"repeat {repeat}: filling {Mib(s.MemoryBytes)} MiB with random bytes (untimed)");
        using VirtualMachine vm = CreateFilled(s.MemoryBytes, out double fillSeconds);
        vm.Start();
        string load = BenchEnvironment.LoadAverage();

        // Rotate the order so neither backend always goes first (drift on a shared machine).
        var order = Enumerable.Range(0, installs.Count).Select(i => installs[(i + repeat - 1) % installs.Count]).ToList();
        var reports = new List<(PageInstallChoice Install, int Position, LoopbackMigration.Result Result, string Load)>();
        var tcp = new List<RawTcp.Result>();
        var fresh = new List<RawTcpIntoFreshMemory.Result>();
        for (int i = 0; i < order.Count; i++)
        {
            if (vm.State == VmRunState.Paused)
            {
                // The previous migration left the source paused with the same RAM: run it again.
                vm.Resume();
            }
            string loadNow = BenchEnvironment.LoadAverage();
            Progress($"repeat {repeat}: migrating with --page-install {BenchArgs.Name(order[i])} (fill took {fillSeconds:0.0} s; load {loadNow})");
            LoopbackMigration.Result m = LoopbackMigration.Run(vm, Options(dirtyLog), order[i], $"bench-stream-{repeat}-{BenchArgs.Name(order[i])}", MigrationTimeout);
            Require(m, $"repeat {repeat}, --page-install {BenchArgs.Name(order[i])}");
            reports.Add((order[i], i + 1, m, loadNow));
            Progress($"repeat {repeat}: {BenchArgs.Name(order[i])} → backend {m.Report.PageInstall.Backend}: {Gbs(m.Report.Pages.WireBytes / (m.Report.Timing.TotalMs / 1000))} GB/s; raw TCP over {m.Report.Pages.WireBytes} bytes");
            tcp.Add(RawTcp.Measure(m.Report.Pages.WireBytes, TcpTimeout));
            Progress($"repeat {repeat}: raw TCP {Gbs(tcp[^1].BytesPerSecond)} GB/s");
            // Alternate which variant goes first, so neither always follows the raw TCP run.
            int nv = s.FreshMemoryVariants.Count;
            foreach (string variant in Enumerable.Range(0, nv).Select(k => s.FreshMemoryVariants[(k + i + repeat - 1) % nv]))
            {
                fresh.Add(RawTcpIntoFreshMemory.Measure(variant, m.Report.Pages.WireBytes, vm.Memory.SizeBytes, TcpTimeout));
                Progress($"repeat {repeat}: raw TCP into fresh memory ({variant}) {Gbs(fresh[^1].BytesPerSecond)} GB/s");
            }
        }
        double rawBps = tcp.Average(t => t.BytesPerSecond);
        double freshPlain = FreshMean(fresh, RawTcpIntoFreshMemory.Plain);
        double freshUffd = FreshMean(fresh, RawTcpIntoFreshMemory.Uffd);

        MemcpyProbe.Result? probe = null;
        if (s.Probe)
        {
            Progress($"repeat {repeat}: page copy probe (fresh vs touched memory, XxHash3)");
            probe = MemcpyProbe.Measure(vm.Memory);
        }

        var migrations = reports.Select(x => ToMigration(repeat, x.Install, x.Position, x.Result, rawBps, freshPlain, freshUffd, x.Load)).ToList();
        return new Repeat
        {
            Number = repeat,
            FillSeconds = fillSeconds,
            WireBytes = migrations[0].WireBytes,
            RawTcp = tcp,
            RawTcpBytesPerSecond = rawBps,
            FreshMemory = fresh,
            FreshPlainBytesPerSecond = freshPlain,
            FreshUffdBytesPerSecond = freshUffd,
            LoadAverage = load,
            Probe = probe,
            Migrations = migrations,
        };
    }

    private static double FreshMean(List<RawTcpIntoFreshMemory.Result> runs, string variant)
    {
        var rates = runs.Where(f => f.Variant == variant).Select(f => f.BytesPerSecond).ToList();
        return rates.Count > 0 ? rates.Average() : double.NaN;
    }

    private static Migration ToMigration(int repeat, PageInstallChoice install, int position, LoopbackMigration.Result m, double rawBps,
        double freshPlain, double freshUffd, string load)
    {
        MigrationReport rep = m.Report;
        RoundRecord? round1 = rep.Rounds.FirstOrDefault(x => x.Round == 1 && x.Kind == "live");
        long wire = rep.Pages.WireBytes;
        double bps = wire / (rep.Timing.TotalMs / 1000);
        double r1 = round1 is { DurationMs: > 0 } ? round1.WireBytes / (round1.DurationMs / 1000) : double.NaN;
        bool uffd = rep.PageInstall.Backend == "uffd";
        double freshBps = uffd ? freshUffd : freshPlain;
        return new Migration
        {
            Repeat = repeat,
            PositionInRepeat = position,
            PageInstallRequested = BenchArgs.Name(install),
            PageInstallBackend = rep.PageInstall.Backend,
            PageInstallReason = rep.PageInstall.Reason,
            DirtyLogBackend = rep.DirtyLog.Backend,
            DirtyLogReason = rep.DirtyLog.Reason,
            WireBytes = wire,
            PagesSent = rep.Pages.Sent,
            MigrationMs = rep.Timing.TotalMs,
            MigrationWallMs = m.WallMs,
            MigrationBytesPerSecond = bps,
            Round1WireBytes = round1?.WireBytes ?? 0,
            Round1Ms = round1?.DurationMs ?? double.NaN,
            Round1BytesPerSecond = r1,
            PreparationMs = rep.Timing.PreparationMs,
            DowntimeMs = rep.Timing.DowntimeMs,
            FinalPagesMs = rep.Timing.DowntimeParts.FinalPagesMs,
            StateMs = rep.Timing.DowntimeParts.StateMs,
            SwitchoverMs = rep.Timing.DowntimeParts.SwitchoverMs,
            DestinationResumeMs = rep.Timing.DowntimeParts.DestinationResumeMs,
            Rounds = rep.Rounds.Count,
            StopReason = rep.StopReason ?? "",
            RawTcpBytesPerSecond = rawBps,
            Ratio = bps / rawBps,
            Round1Ratio = r1 / rawBps,
            FreshMemoryVariant = uffd ? RawTcpIntoFreshMemory.Uffd : RawTcpIntoFreshMemory.Plain,
            FreshMemoryBytesPerSecond = freshBps,
            FreshMemoryRatio = bps / freshBps,
            DestinationFaultsPerPage = rep.Pages.Sent > 0 ? m.Sides.DestinationMinorFaults / (double)rep.Pages.Sent : double.NaN,
            LoadAverage = load,
            Sides = m.Sides,
            Report = rep,
        };
    }

    /// <summary>Medians over repeats for one requested backend.</summary>
    public sealed record Summary
    {
        public string PageInstallRequested { get; init; } = "";
        public string PageInstallBackends { get; init; } = "";
        public string DirtyLogBackends { get; init; } = "";
        public double MigrationBytesPerSecond { get; init; }
        public double Round1BytesPerSecond { get; init; }
        public double RawTcpBytesPerSecond { get; init; }
        public double Ratio { get; init; }

        /// <summary>Median migration GB/s ÷ median raw TCP GB/s (less sensitive to one noisy raw TCP run than the median of ratios).</summary>
        public double RatioOfMedians { get; init; }
        public double RatioMin { get; init; }
        public double RatioMax { get; init; }
        public double Round1Ratio { get; init; }

        /// <summary>Fresh-memory variant(s) the migrations were held against (plain for copy, uffd for uffd).</summary>
        public string FreshMemoryVariants { get; init; } = "";

        /// <summary>Median over the migrations of their repeat's fresh-memory baseline.</summary>
        public double FreshMemoryBytesPerSecond { get; init; }

        /// <summary>Median of migration GB/s ÷ fresh-memory baseline GB/s.</summary>
        public double FreshMemoryRatio { get; init; }
        public double FreshMemoryRatioMin { get; init; }
        public double FreshMemoryRatioMax { get; init; }
        public double MigrationSeconds { get; init; }
        public double Round1Seconds { get; init; }
        public double PreparationMinusRound1Ms { get; init; }
        public double DowntimeMs { get; init; }
        public double SwitchoverMs { get; init; }
        public double SourceThreadSeconds { get; init; }
        public double SourceUserSeconds { get; init; }
        public double SourceSystemSeconds { get; init; }
        public double SourceBlockedShare { get; init; }
        public double DestinationThreadSeconds { get; init; }
        public double DestinationUserSeconds { get; init; }
        public double DestinationSystemSeconds { get; init; }
        public double DestinationBlockedInReadShare { get; init; }
        public double DestinationFaultsPerPage { get; init; }

        /// <summary>Source + destination thread CPU (user + sys) for the migration, median.</summary>
        public double MigrationCpuSeconds { get; init; }

        /// <summary>Sender + receiver thread CPU (user + sys) of the raw TCP runs, median over all runs.</summary>
        public double RawTcpCpuSeconds { get; init; }
        public double TargetRatio { get; init; } = StreamBenchmark.TargetRatio;
        public bool MeetsTarget { get; init; }

        /// <summary>Target ÷ ratio: how many times faster the migration would have to be.</summary>
        public double ShortfallFactor { get; init; }
    }

    private static Summary Summarise(string install, List<Repeat> repeats)
    {
        var ms = repeats.SelectMany(r => r.Migrations).Where(m => m.PageInstallRequested == install).ToList();
        double ratio = Stats.Median(ms.Select(m => m.Ratio));
        return new Summary
        {
            PageInstallRequested = install,
            PageInstallBackends = string.Join(", ", ms.Select(m => m.PageInstallBackend).Distinct()),
            DirtyLogBackends = string.Join(", ", ms.Select(m => m.DirtyLogBackend).Distinct()),
            MigrationBytesPerSecond = Stats.Median(ms.Select(m => m.MigrationBytesPerSecond)),
            Round1BytesPerSecond = Stats.Median(ms.Select(m => m.Round1BytesPerSecond)),
            RawTcpBytesPerSecond = Stats.Median(ms.Select(m => m.RawTcpBytesPerSecond)),
            Ratio = ratio,
            RatioOfMedians = Stats.Median(ms.Select(m => m.MigrationBytesPerSecond)) / Stats.Median(repeats.Select(r => r.RawTcpBytesPerSecond)),
            RatioMin = Stats.Min(ms.Select(m => m.Ratio)),
            RatioMax = Stats.Max(ms.Select(m => m.Ratio)),
            Round1Ratio = Stats.Median(ms.Select(m => m.Round1Ratio)),
            FreshMemoryVariants = string.Join(", ", ms.Select(m => m.FreshMemoryVariant).Distinct()),
            FreshMemoryBytesPerSecond = Stats.Median(ms.Select(m => m.FreshMemoryBytesPerSecond)),
            FreshMemoryRatio = Stats.Median(ms.Select(m => m.FreshMemoryRatio)),
            FreshMemoryRatioMin = Stats.Min(ms.Select(m => m.FreshMemoryRatio)),
            FreshMemoryRatioMax = Stats.Max(ms.Select(m => m.FreshMemoryRatio)),
            MigrationSeconds = Stats.Median(ms.Select(m => m.MigrationMs / 1000)),
            Round1Seconds = Stats.Median(ms.Select(m => m.Round1Ms / 1000)),
            PreparationMinusRound1Ms = Stats.Median(ms.Select(m => m.PreparationMs - m.Round1Ms)),
            DowntimeMs = Stats.Median(ms.Select(m => m.DowntimeMs)),
            SwitchoverMs = Stats.Median(ms.Select(m => m.SwitchoverMs)),
            SourceThreadSeconds = Stats.Median(ms.Select(m => m.Sides.SourceThreadSeconds)),
            SourceUserSeconds = Stats.Median(ms.Select(m => m.Sides.SourceUserSeconds)),
            SourceSystemSeconds = Stats.Median(ms.Select(m => m.Sides.SourceSystemSeconds)),
            SourceBlockedShare = Stats.Median(ms.Select(m => m.Sides.SourceBlockedInWriteSeconds / m.Sides.SourceThreadSeconds)),
            DestinationThreadSeconds = Stats.Median(ms.Select(m => m.Sides.DestinationThreadSeconds)),
            DestinationUserSeconds = Stats.Median(ms.Select(m => m.Sides.DestinationUserSeconds)),
            DestinationSystemSeconds = Stats.Median(ms.Select(m => m.Sides.DestinationSystemSeconds)),
            DestinationBlockedInReadShare = Stats.Median(ms.Select(m => m.Sides.DestinationBlockedInReadSeconds / m.Sides.DestinationThreadSeconds)),
            DestinationFaultsPerPage = Stats.Median(ms.Select(m => m.DestinationFaultsPerPage)),
            MigrationCpuSeconds = Stats.Median(ms.Select(m => m.Sides.SourceUserSeconds + m.Sides.SourceSystemSeconds + m.Sides.DestinationUserSeconds + m.Sides.DestinationSystemSeconds)),
            RawTcpCpuSeconds = Stats.Median(repeats.SelectMany(r => r.RawTcp).Select(t => t.Sender.UserSeconds + t.Sender.SystemSeconds + t.Receiver.UserSeconds + t.Receiver.SystemSeconds)),
            MeetsTarget = ratio >= TargetRatio,
            ShortfallFactor = TargetRatio / ratio,
        };
    }

    /// <summary>The raw TCP into fresh memory runs, one line per run, then the medians per variant.</summary>
    private static void PrintFreshMemory(List<Repeat> repeats, Settings s)
    {
        var runs = new MarkdownTable("repeat", "variant", "GB/s", "s", "sender user / sys s", "receiver user / sys s", "receiver faults / page",
            "receiver in recv / in UFFDIO_COPY s", "setup / free ms", "load avg");
        foreach (string variant in s.FreshMemoryVariants)
        {
            foreach (Repeat r in repeats)
            {
                foreach (RawTcpIntoFreshMemory.Result f in r.FreshMemory.Where(f => f.Variant == variant))
                {
                    runs.Add(r.Number.ToString(CultureInfo.InvariantCulture), f.Variant, Gbs(f.BytesPerSecond), F(f.Seconds),
                        $"{F(f.Sender.UserSeconds)} / {F(f.Sender.SystemSeconds)}", $"{F(f.Receiver.UserSeconds)} / {F(f.Receiver.SystemSeconds)}",
                        F(f.ReceiverFaultsPerPage), $"{F(f.ReceiverInRecvSeconds)} / {F(f.ReceiverInCopySeconds)}",
                        $"{f.SetupMs:0.0} / {f.FreeMs:0}", f.LoadAverage);
                }
            }
        }
        Console.WriteLine("Raw TCP into fresh memory (same byte count, same socket settings; the receiver lands the first guest-size bytes in a new " +
                          $"anonymous mapping of the guest's size, freed after each run; plain: recv into the mapping; uffd: recv into a {PageInstaller.RunPages}-page " +
                          "staging buffer, one UFFDIO_COPY per run into the MISSING-registered mapping):");
        Console.WriteLine();
        Console.WriteLine(runs);

        var med = new MarkdownTable("variant", "runs", "GB/s median (min–max)", "sender user + sys s", "receiver user + sys s", "receiver faults / page",
            "CPU of both threads s");
        foreach (string variant in s.FreshMemoryVariants)
        {
            var fs = repeats.SelectMany(r => r.FreshMemory).Where(f => f.Variant == variant).ToList();
            med.Add(variant, fs.Count.ToString(CultureInfo.InvariantCulture),
                $"{Gbs(Stats.Median(fs.Select(f => f.BytesPerSecond)))} ({Gbs(Stats.Min(fs.Select(f => f.BytesPerSecond)))}–{Gbs(Stats.Max(fs.Select(f => f.BytesPerSecond)))})",
                F(Stats.Median(fs.Select(f => f.Sender.UserSeconds + f.Sender.SystemSeconds))),
                F(Stats.Median(fs.Select(f => f.Receiver.UserSeconds + f.Receiver.SystemSeconds))),
                F(Stats.Median(fs.Select(f => f.ReceiverFaultsPerPage))), F(Stats.Median(fs.Select(f => f.CpuSeconds))));
        }
        if (s.FreshMemoryUffdSkipped is not null)
        {
            med.Add(RawTcpIntoFreshMemory.Uffd, "0", $"skipped: {s.FreshMemoryUffdSkipped}", "", "", "", "");
        }
        Console.WriteLine("Raw TCP into fresh memory, medians over all runs:");
        Console.WriteLine();
        Console.WriteLine(med);
    }

    private static void Print(List<Repeat> repeats, List<Summary> summaries, Settings s)
    {
        var t = new MarkdownTable("repeat", "--page-install → backend", "dirty log", "wire MiB", "migration s", "migration GB/s", "round 1 GB/s",
            "raw TCP GB/s", "ratio", "fresh-memory GB/s", "ratio to fresh", "ratio (round 1)", "prep − round 1 ms", "downtime ms", "load avg");
        foreach (string install in s.PageInstall)
        {
            foreach (Migration m in repeats.SelectMany(r => r.Migrations).Where(m => m.PageInstallRequested == install))
            {
                t.Add($"{m.Repeat} ({m.PositionInRepeat}.)", $"{m.PageInstallRequested} → {m.PageInstallBackend}", m.DirtyLogBackend, Mib(m.WireBytes),
                    F(m.MigrationMs / 1000), Gbs(m.MigrationBytesPerSecond), Gbs(m.Round1BytesPerSecond), Gbs(m.RawTcpBytesPerSecond),
                    F(m.Ratio), $"{Gbs(m.FreshMemoryBytesPerSecond)} ({m.FreshMemoryVariant})", F(m.FreshMemoryRatio), F(m.Round1Ratio), (m.PreparationMs - m.Round1Ms).ToString("0", CultureInfo.InvariantCulture),
                    m.DowntimeMs.ToString("0.0", CultureInfo.InvariantCulture), m.LoadAverage);
            }
            Summary x = summaries.Single(z => z.PageInstallRequested == install);
            t.Add("**median**", $"{x.PageInstallRequested} → {x.PageInstallBackends}", x.DirtyLogBackends, Mib(repeats[0].WireBytes), F(x.MigrationSeconds),
                Gbs(x.MigrationBytesPerSecond), Gbs(x.Round1BytesPerSecond), Gbs(x.RawTcpBytesPerSecond), $"**{F(x.Ratio)}**",
                $"{Gbs(x.FreshMemoryBytesPerSecond)} ({x.FreshMemoryVariants})", $"**{F(x.FreshMemoryRatio)}**", F(x.Round1Ratio),
                x.PreparationMinusRound1Ms.ToString("0", CultureInfo.InvariantCulture), x.DowntimeMs.ToString("0.0", CultureInfo.InvariantCulture), "");
        }
        Console.WriteLine(t);
        Console.WriteLine("GB = 10^9 bytes. Migration GB/s = wire bytes ÷ the report's total time (offer → resume acknowledged); round 1 GB/s = round-1 wire " +
                          "bytes ÷ round-1 time at the source. Raw TCP GB/s = mean of the repeat's raw TCP runs (one after each migration, same byte count); " +
                          "ratio = migration GB/s ÷ that. Fresh-memory GB/s = mean of the repeat's raw TCP into fresh memory runs of the same " +
                          "install backend (plain for copy, uffd for uffd); ratio to fresh = migration GB/s ÷ that. \"prep − round 1\" = preparation − round 1 at the source: offer round trip, harvest, policy and " +
                          "the wait for the destination's round acknowledgement (the drain). (n.) = position of the migration within its repeat.");
        Console.WriteLine();
        Console.WriteLine("Backends, as the reports name them: " + string.Join("; ", repeats.SelectMany(r => r.Migrations)
            .Select(m => $"page install: {m.PageInstallReason}; dirty log: {m.DirtyLogReason}").Distinct()));
        Console.WriteLine();

        var sides = new MarkdownTable("repeat", "backend", "source thread s", "source user / sys s", "source blocked in write", "destination thread s",
            "destination user / sys s", "destination blocked in read", "destination faults / page", "hash ms: source / destination",
            "downtime: final / state / switchover ms");
        foreach (string install in s.PageInstall)
        {
            foreach (Migration m in repeats.SelectMany(r => r.Migrations).Where(m => m.PageInstallRequested == install))
            {
                LoopbackMigration.SideCosts c = m.Sides;
                sides.Add(m.Repeat.ToString(CultureInfo.InvariantCulture), m.PageInstallBackend, F(c.SourceThreadSeconds),
                    $"{F(c.SourceUserSeconds)} / {F(c.SourceSystemSeconds)}", P(c.SourceBlockedInWriteSeconds / c.SourceThreadSeconds),
                    F(c.DestinationThreadSeconds), $"{F(c.DestinationUserSeconds)} / {F(c.DestinationSystemSeconds)}",
                    P(c.DestinationBlockedInReadSeconds / c.DestinationThreadSeconds), F(m.DestinationFaultsPerPage),
                    $"{m.Report?.Verification.SourceHashMs:0} / {m.Report?.Verification.DestinationHashMs:0}",
                    $"{m.FinalPagesMs:0.0} / {m.StateMs:0.0} / {m.SwitchoverMs:0.0}");
            }
        }
        Console.WriteLine("Per-thread accounting of each migration (CPU from /proc/thread-self/stat, 10 ms resolution; blocked time measured around each socket call):");
        Console.WriteLine();
        Console.WriteLine(sides);

        var raw = new MarkdownTable("repeat", "raw TCP runs GB/s", "sender user / sys s", "receiver user / sys s");
        foreach (Repeat r in repeats)
        {
            raw.Add(r.Number.ToString(CultureInfo.InvariantCulture), string.Join(", ", r.RawTcp.Select(x => Gbs(x.BytesPerSecond))),
                string.Join(", ", r.RawTcp.Select(x => $"{F(x.Sender.UserSeconds)} / {F(x.Sender.SystemSeconds)}")),
                string.Join(", ", r.RawTcp.Select(x => $"{F(x.Receiver.UserSeconds)} / {F(x.Receiver.SystemSeconds)}")));
        }
        Console.WriteLine("Raw TCP runs (same byte count as the migration, same socket settings):");
        Console.WriteLine();
        Console.WriteLine(raw);
        PrintFreshMemory(repeats, s);

        List<MemcpyProbe.Result> probes = repeats.Where(r => r.Probe is not null).Select(r => r.Probe!).ToList();
        if (probes.Count > 0)
        {
            var pt = new MarkdownTable("repeat", "memcpy fresh GB/s (µs/page, faults/page)", "fresh after 1-byte store GB/s (faults/page)", "memcpy touched GB/s", "XxHash3 GB/s");
            foreach (Repeat r in repeats.Where(r => r.Probe is not null))
            {
                MemcpyProbe.Result p = r.Probe!;
                pt.Add(r.Number.ToString(CultureInfo.InvariantCulture), $"{Gbs(p.FreshBytesPerSecond)} ({p.FreshMicrosecondsPerPage:0.00}, {F(p.FreshFaultsPerPage)})",
                    $"{Gbs(p.StoreFirstBytesPerSecond)} ({F(p.StoreFirstFaultsPerPage)})", Gbs(p.TouchedBytesPerSecond), Gbs(p.HashBytesPerSecond));
            }
            pt.Add("**median**", $"{Gbs(Stats.Median(probes.Select(p => p.FreshBytesPerSecond)))} ({Stats.Median(probes.Select(p => p.FreshMicrosecondsPerPage)):0.00})",
                Gbs(Stats.Median(probes.Select(p => p.StoreFirstBytesPerSecond))), Gbs(Stats.Median(probes.Select(p => p.TouchedBytesPerSecond))),
                Gbs(Stats.Median(probes.Select(p => p.HashBytesPerSecond))));
            Console.WriteLine("Page copy probe on the same pages (4 KiB at a time from the paused source; the two fresh passes interleaved 2 MiB at a time):");
            Console.WriteLine();
            Console.WriteLine(pt);
        }
        Console.WriteLine($"> {BenchEnvironment.MachineCaveat}");
        Console.WriteLine();

        foreach (Summary x in summaries)
        {
            string verdict = x.MeetsTarget
                ? $"**met** ({F(x.Ratio)}, {F(x.Ratio / TargetRatio)}× the target)"
                : $"**not met**: {F(x.Ratio)} (repeats {F(x.RatioMin)}–{F(x.RatioMax)}; median GB/s ÷ median raw TCP GB/s: {F(x.RatioOfMedians)}), " +
                  $"i.e. {x.Ratio * 100:0}% of raw TCP; the migration would have to be {F(x.ShortfallFactor)}× faster";
            Console.WriteLine($"- `--page-install {x.PageInstallRequested}` (backend {x.PageInstallBackends}): target ratio ≥ {TargetRatio:0.0} {verdict}. " +
                              $"Source blocked in writes {P(x.SourceBlockedShare)} of its thread time; destination user / sys {F(x.DestinationUserSeconds)} / " +
                              $"{F(x.DestinationSystemSeconds)} s of {F(x.DestinationThreadSeconds)} s, {F(x.DestinationFaultsPerPage)} faults per page, " +
                              $"blocked in reads {P(x.DestinationBlockedInReadShare)}. CPU of the two migration threads {F(x.MigrationCpuSeconds)} s " +
                              $"against {F(x.RawTcpCpuSeconds)} s for raw TCP's two threads over the same bytes ({F(x.MigrationCpuSeconds / x.RawTcpCpuSeconds)}×). " +
                              $"Against raw TCP into fresh memory ({x.FreshMemoryVariants}, {Gbs(x.FreshMemoryBytesPerSecond)} GB/s): ratio {F(x.FreshMemoryRatio)} " +
                              $"(repeats {F(x.FreshMemoryRatioMin)}–{F(x.FreshMemoryRatioMax)}).");
        }
        if (probes.Count > 0)
        {
            double bytes = probes[0].Bytes;
            double rawBps = Stats.Median(repeats.Select(r => r.RawTcpBytesPerSecond));
            double budget = bytes / (TargetRatio * rawBps);
            double touched = Stats.Median(probes.Select(p => p.TouchedBytesPerSecond));
            double hash = Stats.Median(probes.Select(p => p.HashBytesPerSecond));
            double floorWork = bytes / touched + 2 * bytes / hash;
            Console.WriteLine($"- Budget at the target: {Mib((long)bytes)} MiB at {TargetRatio:0.0} × {Gbs(rawBps)} GB/s is {F(budget)} s. Per side, one 4 KiB copy " +
                              $"(touched memory, {Gbs(touched)} GB/s) plus two XxHash3 passes ({Gbs(hash)} GB/s) cost {F(floorWork)} s of CPU " +
                              $"({floorWork / budget * 100:0}% of the budget) before the kernel's socket copy, which raw TCP also pays.");
        }
    }
}
