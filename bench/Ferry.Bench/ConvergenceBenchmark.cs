using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Core.Policy;
using Ferry.Core.Reporting;
using Ferry.Core.Tracking;
using Ferry.Core.Units;
using Ferry.Core.Workloads;
using Ferry.Vm.Machine;
using static Ferry.Bench.BenchFormat;

namespace Ferry.Bench;

/// <summary>
/// `convergence`: pre-copy under a memtouch guest (working set × page-write rate) over a
/// bandwidth-limited loopback link, with the default policy (300 ms downtime limit, 30 × RAM cap)
/// plus a round cap. Each case runs the guest first for the baseline window, then migrates;
/// total time is compared with the floor: the bytes the guest ever wrote ÷ bandwidth.
/// </summary>
internal static class ConvergenceBenchmark
{
    private static readonly long[] DefaultWss = [64L << 20, 256L << 20];
    private static readonly long[] DefaultRates = [5_000, 20_000, 100_000];
    private static readonly TimeSpan PolicyTimeout = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(15);

    public sealed record Case(long WssBytes, long Rate)
    {
        public string Label => $"{WssBytes >> 20}MiB@{Rate}";
    }

    public sealed record Settings
    {
        public long MemoryBytes { get; init; }
        public int Repeats { get; init; }
        public int MaxRounds { get; init; }
        public string Pattern { get; init; } = "uniform";
        public string? Content { get; init; }
        public long BandwidthBytesPerSecond { get; init; }
        public int Vcpus { get; init; }
        public ulong Seed { get; init; }
        public double BaselineSeconds { get; init; }
        public double DowntimeLimitMs { get; init; }
        public double MaxRamMultiple { get; init; }
        public string PageInstall { get; init; } = "auto";
        public string DirtyLog { get; init; } = "auto";
        public IReadOnlyList<string> Cases { get; init; } = [];
    }

    public sealed record Run
    {
        public string Case { get; init; } = "";
        public int Repeat { get; init; }
        public string Workload { get; init; } = "";
        public string Outcome { get; init; } = "";
        public string PageInstallBackend { get; init; } = "";
        public string DirtyLogBackend { get; init; } = "";
        public string DirtyLogReason { get; init; } = "";
        public double TotalMs { get; init; }
        public double PreparationMs { get; init; }
        public double DowntimeMs { get; init; }
        public double FinalPagesMs { get; init; }
        public double StateMs { get; init; }
        public double SwitchoverMs { get; init; }
        public double DestinationResumeMs { get; init; }
        public int LiveRounds { get; init; }
        public long WireBytes { get; init; }
        public long PagesSent { get; init; }
        public long UniquePages { get; init; }
        public long ZeroPagesSent { get; init; }
        public long PopulatedPagesAtEnd { get; init; }
        public long NonZeroPagesAtEnd { get; init; }
        public double BaselineOpsPerSecond { get; init; }
        public double DuringOpsPerSecond { get; init; }
        public double DegradationPercent { get; init; }
        public double LiveOpsPerSecond { get; init; }
        public double LiveDegradationPercent { get; init; }
        public string StopReason { get; init; } = "";
        public double FloorSeconds { get; init; }
        public double TotalOverFloor { get; init; }
        public double NonZeroFloorSeconds { get; init; }
        public double TotalOverNonZeroFloor { get; init; }
        public string LoadAverage { get; init; } = "";
        public LoopbackMigration.SideCosts Sides { get; init; } = new();
        public MigrationReport? Report { get; init; }
    }

    public sealed record CaseSummary
    {
        public string Case { get; init; } = "";
        public int Repeats { get; init; }
        public double BaselineOpsPerSecond { get; init; }
        public double TotalMs { get; init; }
        public double DowntimeMs { get; init; }
        public double FinalPagesMs { get; init; }
        public double StateMs { get; init; }
        public double SwitchoverMs { get; init; }
        public double LiveRounds { get; init; }
        public double WireBytes { get; init; }
        public double DegradationPercent { get; init; }
        public double LiveDegradationPercent { get; init; }
        public double DestinationResumeMs { get; init; }
        public string PageInstallBackends { get; init; } = "";
        public string DirtyLogBackends { get; init; } = "";
        public double DowntimeOverLimit { get; init; }
        public string StopKinds { get; init; } = "";
        public string MedianRunStopReason { get; init; } = "";
        public double UniquePages { get; init; }
        public double FloorSeconds { get; init; }
        public double TotalOverFloor { get; init; }
        public double NonZeroFloorSeconds { get; init; }
        public double TotalOverNonZeroFloor { get; init; }
        public double FullRamFloorSeconds { get; init; }
    }

    public static int Execute(BenchArgs args)
    {
        var cases = ParseCases(args.String("cases"));
        string pattern = (args.String("pattern") ?? "uniform").ToLowerInvariant();
        string? content = args.String("content")?.ToLowerInvariant();
        var settings = new Settings
        {
            MemoryBytes = args.Bytes("memory", 512L << 20),
            Repeats = args.Int("repeats", 3, 1, 50),
            MaxRounds = args.Int("max-rounds", 10, 1, 1000),
            Pattern = pattern,
            Content = content,
            BandwidthBytesPerSecond = args.Rate("bandwidth", 125_000_000),
            Vcpus = args.Int("vcpus", 1, 1, 64),
            Seed = (ulong)args.Int("seed", 7, 0, int.MaxValue),
            BaselineSeconds = MigrationOptions.DefaultBaselineWindow.TotalSeconds,
            DowntimeLimitMs = PreCopyOptions.DefaultDowntimeLimit.TotalMilliseconds,
            MaxRamMultiple = PreCopyOptions.DefaultMaxRamMultiple,
            PageInstall = BenchArgs.Name(args.PageInstall()),
            DirtyLog = BenchArgs.Name(args.DirtyLog()),
            Cases = cases.Select(c => c.Label).ToArray(),
        };
        string? outPath = args.String("out");
        bool noWarmup = args.Flag("no-warmup");
        args.RejectUnknown();
        // Fail on a bad workload before any VM is built.
        foreach (Case c in cases)
        {
            WorkloadSpec.Parse(WorkloadFor(c, settings));
        }

        var env = BenchEnvironment.Capture();
        DateTimeOffset startedAt = DateTimeOffset.Now;
        double fullRamFloor = settings.MemoryBytes / (double)settings.BandwidthBytesPerSecond;
        Console.WriteLine($"# Ferry bench: convergence (memtouch, pre-copy, {settings.BandwidthBytesPerSecond / 1e6:0.#} MB/s limit, loopback TCP)");
        Console.WriteLine();
        Console.WriteLine($"- VM: {settings.MemoryBytes >> 20} MiB RAM, {settings.Vcpus} vCPU, workload `{WorkloadFor(cases[0], settings)}` (wss and rate per case)");
        Console.WriteLine($"- policy: default pre-copy (downtime limit {settings.DowntimeLimitMs:0} ms, cap {settings.MaxRamMultiple:0} × RAM) " +
                          $"**plus round cap --max-rounds {settings.MaxRounds}** (without it, non-converging cases run to the 30 × RAM cap: " +
                          $"{settings.MaxRamMultiple * settings.MemoryBytes / settings.BandwidthBytesPerSecond:0} s each here)");
        Console.WriteLine($"- requested: --page-install {settings.PageInstall}, --dirty-log {settings.DirtyLog} (the backends each run used are in the tables, from its report)");
        Console.WriteLine($"- each run: VM started, runs {settings.BaselineSeconds:0} s (degradation baseline window), then migrates; {settings.Repeats} repeat(s), medians reported");
        Console.WriteLine($"- warm-up: {(noWarmup ? "none" : "one small untimed migration first (16MiB@5000 on a 64 MiB VM), so JIT compilation does not land in the first case's downtime")}");
        Console.WriteLine($"- runtime: {env.Runtime}, {env.ProcessorCount} CPUs, tiered compilation {env.TieredCompilation}, load average {env.LoadAverageAtStart}");
        Console.WriteLine();

        Run? warmup = null;
        if (!noWarmup)
        {
            // Untimed: the first migration in a process pays JIT compilation (tiering is off, so
            // every method is compiled fully optimised on first call), some of it inside the downtime.
            // Its figures are kept in the JSON as what a cold process sees.
            var w = new Case(16L << 20, 5_000);
            var ws = settings with { MemoryBytes = 64L << 20, BaselineSeconds = 0.5 };
            Progress($"warm-up (untimed): {w.Label} on a {ws.MemoryBytes >> 20} MiB VM");
            warmup = RunOnce(w, 0, ws);
            Progress($"  warm-up downtime {warmup.DowntimeMs:0} ms (final pages {warmup.FinalPagesMs:0.0} / state {warmup.StateMs:0.0} / switchover {warmup.SwitchoverMs:0.0} ms); " +
                     $"page install {warmup.PageInstallBackend}, dirty log {warmup.DirtyLogBackend}");
        }

        var runs = new List<Run>();
        int total = settings.Repeats * cases.Count;
        int n = 0;
        // Repeat-major order, so a burst of noise from the shared machine spreads over cases instead of sinking one.
        for (int r = 1; r <= settings.Repeats; r++)
        {
            foreach (Case c in cases)
            {
                n++;
                Progress($"run {n}/{total}: {c.Label}, repeat {r}");
                Run run = RunOnce(c, r, settings);
                runs.Add(run);
                Progress($"  {run.Outcome}: total {run.TotalMs / 1000:0.00} s, downtime {run.DowntimeMs:0} ms, {run.LiveRounds} live rounds, " +
                         $"wire {run.WireBytes / 1048576.0:0} MiB, degradation {run.DegradationPercent:0.0} % (live {run.LiveDegradationPercent:0.0} %), " +
                         $"total/floor {run.TotalOverFloor:0.00}; install {run.PageInstallBackend}, log {run.DirtyLogBackend}; {run.StopReason}");
            }
        }

        var summaries = cases.Select(c => Summarise(c, runs.Where(x => x.Case == c.Label).ToList(), fullRamFloor, settings.DowntimeLimitMs)).ToList();
        Print(summaries, runs, settings, fullRamFloor);

        ResultFile.Publish("convergence", args, startedAt, env, settings, new { FullRamFloorSeconds = fullRamFloor, Cases = summaries, ColdProcessWarmup = warmup }, runs, outPath);
        return 0;
    }

    private static List<Case> ParseCases(string? text)
    {
        if (text is null)
        {
            return DefaultWss.SelectMany(w => DefaultRates.Select(r => new Case(w, r))).ToList();
        }
        var list = new List<Case>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int at = part.IndexOf('@');
            if (at <= 0
                || !UnitParser.TryParseBytes(part[..at], out long wss, out _) || wss < PageSize.Bytes
                || !long.TryParse(part[(at + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out long rate) || rate <= 0)
            {
                throw new BenchUsageException($"--cases: '{part}' is not WSS@RATE (example: 64MiB@5000,256MiB@100000)");
            }
            list.Add(new Case(wss, rate));
        }
        return list.Count > 0 ? list : throw new BenchUsageException("--cases is empty");
    }

    private static string WorkloadFor(Case c, Settings s) =>
        $"memtouch:rate={c.Rate},wss={c.WssBytes >> 20}MiB,pattern={s.Pattern}," + (s.Content is null ? "" : $"content={s.Content},") + $"seed={s.Seed}";

    private static Run RunOnce(Case c, int repeat, Settings s)
    {
        string workload = WorkloadFor(c, s);
        using var vm = VirtualMachine.Create(new VmConfig
        {
            Name = "bench-convergence",
            MemoryBytes = s.MemoryBytes,
            Vcpus = s.Vcpus,
            Workload = workload,
        });
        vm.Start();
        // The baseline: the guest runs alone for the window the report's degradation figure compares against.
        Thread.Sleep(TimeSpan.FromSeconds(s.BaselineSeconds) + TimeSpan.FromMilliseconds(150));
        string load = BenchEnvironment.LoadAverage();
        var options = new MigrationOptions
        {
            Technique = MigrationTechnique.PreCopy,
            MaxBandwidthBytesPerSecond = s.BandwidthBytesPerSecond,
            PreCopy = new PreCopyOptions { MaxRounds = s.MaxRounds, Timeout = PolicyTimeout },
            DirtyLog = ParseDirtyLog(s.DirtyLog),
        };
        LoopbackMigration.Result m = LoopbackMigration.Run(vm, options, ParsePageInstall(s.PageInstall), $"bench-conv-{c.Label}-{repeat}", RunTimeout);
        MigrationReport rep = m.Report;
        if (rep.Outcome != MigrationOutcome.Completed || !rep.Verification.DigestsMatch)
        {
            throw new InvalidOperationException($"{c.Label} repeat {repeat}: migration did not complete cleanly: outcome {rep.Outcome}, " +
                                                $"error {rep.Error ?? m.DestinationError ?? "none"}");
        }
        // The source VM is paused now: count what the guest wrote, and how much of it is non-zero.
        long populated = 0;
        long nonZero = 0;
        for (long p = 0; p < vm.Memory.PageCount; p++)
        {
            if (vm.Memory.IsPopulated(p))
            {
                populated++;
                if (vm.Memory.PageView(p).ContainsAnyExcept((byte)0))
                {
                    nonZero++;
                }
            }
        }
        double bw = s.BandwidthBytesPerSecond;
        double floor = rep.Pages.Unique * (double)PageSize.Bytes / bw;
        double nzFloor = nonZero * (double)PageSize.Bytes / bw;
        double totalS = rep.Timing.TotalMs / 1000;
        return new Run
        {
            Case = c.Label,
            Repeat = repeat,
            Workload = workload,
            Outcome = rep.Outcome.ToWire(),
            PageInstallBackend = rep.PageInstall.Backend,
            DirtyLogBackend = rep.DirtyLog.Backend,
            DirtyLogReason = rep.DirtyLog.Reason,
            TotalMs = rep.Timing.TotalMs,
            PreparationMs = rep.Timing.PreparationMs,
            DowntimeMs = rep.Timing.DowntimeMs,
            FinalPagesMs = rep.Timing.DowntimeParts.FinalPagesMs,
            StateMs = rep.Timing.DowntimeParts.StateMs,
            SwitchoverMs = rep.Timing.DowntimeParts.SwitchoverMs,
            DestinationResumeMs = rep.Timing.DowntimeParts.DestinationResumeMs,
            LiveRounds = rep.Rounds.Count(x => x.Kind == "live"),
            WireBytes = rep.Pages.WireBytes,
            PagesSent = rep.Pages.Sent,
            UniquePages = rep.Pages.Unique,
            ZeroPagesSent = rep.Pages.ZeroSent,
            PopulatedPagesAtEnd = populated,
            NonZeroPagesAtEnd = nonZero,
            BaselineOpsPerSecond = rep.Degradation.BaselineOpsPerSecond,
            DuringOpsPerSecond = rep.Degradation.DuringOpsPerSecond,
            DegradationPercent = rep.Degradation.DegradationPercent,
            LiveOpsPerSecond = rep.Degradation.LiveOpsPerSecond,
            LiveDegradationPercent = rep.Degradation.LiveDegradationPercent,
            StopReason = rep.StopReason ?? "",
            FloorSeconds = floor,
            TotalOverFloor = floor > 0 ? totalS / floor : double.NaN,
            NonZeroFloorSeconds = nzFloor,
            TotalOverNonZeroFloor = nzFloor > 0 ? totalS / nzFloor : double.NaN,
            LoadAverage = load,
            Sides = m.Sides,
            Report = rep,
        };
    }

    private static string StopKind(string reason) =>
        reason.StartsWith("converged", StringComparison.Ordinal) ? "converged"
        : reason.StartsWith("round cap", StringComparison.Ordinal) ? "round cap"
        : reason.StartsWith("sent ", StringComparison.Ordinal) ? "RAM-multiple cap"
        : reason.StartsWith("dirty pages", StringComparison.Ordinal) ? "dirty threshold"
        : reason;

    private static DirtyLogChoice ParseDirtyLog(string name) => Enum.Parse<DirtyLogChoice>(name, ignoreCase: true);

    private static PageInstallChoice ParsePageInstall(string name) => Enum.Parse<PageInstallChoice>(name, ignoreCase: true);

    private static CaseSummary Summarise(Case c, List<Run> runs, double fullRamFloor, double downtimeLimitMs)
    {
        Run medianRun = runs.OrderBy(r => r.TotalMs).ElementAt(runs.Count / 2);
        string kinds = string.Join(", ", runs.GroupBy(r => StopKind(r.StopReason)).Select(g => $"{g.Key} {g.Count()}/{runs.Count}"));
        return new CaseSummary
        {
            Case = c.Label,
            Repeats = runs.Count,
            BaselineOpsPerSecond = Stats.Median(runs.Select(r => r.BaselineOpsPerSecond)),
            TotalMs = Stats.Median(runs.Select(r => r.TotalMs)),
            DowntimeMs = Stats.Median(runs.Select(r => r.DowntimeMs)),
            FinalPagesMs = Stats.Median(runs.Select(r => r.FinalPagesMs)),
            StateMs = Stats.Median(runs.Select(r => r.StateMs)),
            SwitchoverMs = Stats.Median(runs.Select(r => r.SwitchoverMs)),
            LiveRounds = Stats.Median(runs.Select(r => (double)r.LiveRounds)),
            WireBytes = Stats.Median(runs.Select(r => (double)r.WireBytes)),
            DegradationPercent = Stats.Median(runs.Select(r => r.DegradationPercent)),
            LiveDegradationPercent = Stats.Median(runs.Select(r => r.LiveDegradationPercent)),
            DestinationResumeMs = Stats.Median(runs.Select(r => r.DestinationResumeMs)),
            PageInstallBackends = string.Join(", ", runs.Select(r => r.PageInstallBackend).Distinct()),
            DirtyLogBackends = string.Join(", ", runs.Select(r => r.DirtyLogBackend).Distinct()),
            DowntimeOverLimit = Stats.Median(runs.Select(r => r.DowntimeMs)) / downtimeLimitMs,
            StopKinds = kinds,
            MedianRunStopReason = medianRun.StopReason,
            UniquePages = Stats.Median(runs.Select(r => (double)r.UniquePages)),
            FloorSeconds = Stats.Median(runs.Select(r => r.FloorSeconds)),
            TotalOverFloor = Stats.Median(runs.Select(r => r.TotalOverFloor)),
            NonZeroFloorSeconds = Stats.Median(runs.Select(r => r.NonZeroFloorSeconds)),
            TotalOverNonZeroFloor = Stats.Median(runs.Select(r => r.TotalOverNonZeroFloor)),
            FullRamFloorSeconds = fullRamFloor,
        };
    }

    private static void Print(List<CaseSummary> summaries, List<Run> runs, Settings s, double fullRamFloor)
    {
        var t = new MarkdownTable("case (wss@writes/s)", "install / dirty log", "baseline writes/s", "live rounds", "total s", "downtime ms (× limit)",
            "final pages / state / switchover ms", "wire MiB", "degradation % (whole / live)", "stop", "written MiB", "floor s", "total ÷ floor", "total ÷ non-zero floor");
        foreach (CaseSummary c in summaries)
        {
            t.Add(c.Case, $"{c.PageInstallBackends} / {c.DirtyLogBackends}", c.BaselineOpsPerSecond.ToString("0", CultureInfo.InvariantCulture), c.LiveRounds.ToString("0.#", CultureInfo.InvariantCulture),
                F(c.TotalMs / 1000), $"{c.DowntimeMs:0} ({c.DowntimeOverLimit:0.00}×)",
                $"{c.FinalPagesMs:0} / {c.StateMs:0.0} / {c.SwitchoverMs:0.0}", (c.WireBytes / 1048576).ToString("0", CultureInfo.InvariantCulture),
                $"{c.DegradationPercent:0.0} / {c.LiveDegradationPercent:0.0}", c.StopKinds,
                (c.UniquePages * PageSize.Bytes / 1048576).ToString("0", CultureInfo.InvariantCulture),
                F(c.FloorSeconds), F(c.TotalOverFloor), F(c.TotalOverNonZeroFloor));
        }
        Console.WriteLine($"## Medians of {s.Repeats} repeat(s) per case (round cap --max-rounds {s.MaxRounds})");
        Console.WriteLine();
        Console.WriteLine(t);
        Console.WriteLine("Why each dirty log was chosen (the reports' reasons):");
        Console.WriteLine();
        foreach (var g in runs.GroupBy(r => r.Case))
        {
            Console.WriteLine($"- {g.Key}: {string.Join(" | ", g.Select(r => r.DirtyLogReason).Distinct())}");
        }
        Console.WriteLine();
        Console.WriteLine($"Floor = RAM the guest wrote (distinct pages sent × 4096) ÷ {s.BandwidthBytesPerSecond / 1e6:0.#} MB/s. " +
                          $"Floor with the full RAM size ({s.MemoryBytes >> 20} MiB): **{F(fullRamFloor)} s**. " +
                          "The non-zero floor counts only written pages whose content is not all zeros at the end (memtouch's default content=mix " +
                          "writes zeros into about a quarter of its pages, which travel as 8-byte zero entries). " +
                          $"Downtime = pause → resume acknowledged, × limit = ÷ {s.DowntimeLimitMs:0} ms; its parts as the source's report splits them. " +
                          "Degradation: whole = 1 − (guest ops from start to pause ÷ total time) ÷ baseline, so the downtime counts as zero throughput; " +
                          "live = the same over the live rounds only (start → pause).");
        Console.WriteLine();
        Console.WriteLine($"> {BenchEnvironment.MachineCaveat} Here that shapes the destination's installs (fresh guest RAM) " +
                          "and the guest's first writes to never-touched pages during the baseline window.");
        Console.WriteLine();

        var all = new MarkdownTable("case", "repeat", "baseline writes/s", "live rounds", "total s", "downtime ms", "final / state / switchover ms", "wire MiB",
            "degradation % (whole / live)", "total ÷ floor", "load avg", "stop reason");
        foreach (Run r in runs.OrderBy(r => s.Cases.ToList().IndexOf(r.Case)).ThenBy(r => r.Repeat))
        {
            all.Add(r.Case, r.Repeat.ToString(CultureInfo.InvariantCulture), r.BaselineOpsPerSecond.ToString("0", CultureInfo.InvariantCulture),
                r.LiveRounds.ToString(CultureInfo.InvariantCulture), F(r.TotalMs / 1000), r.DowntimeMs.ToString("0", CultureInfo.InvariantCulture),
                $"{r.FinalPagesMs:0} / {r.StateMs:0.0} / {r.SwitchoverMs:0.0}",
                (r.WireBytes / 1048576.0).ToString("0", CultureInfo.InvariantCulture), $"{r.DegradationPercent:0.0} / {r.LiveDegradationPercent:0.0}",
                F(r.TotalOverFloor), r.LoadAverage, r.StopReason);
        }
        Console.WriteLine("## All runs");
        Console.WriteLine();
        Console.WriteLine(all);
    }
}
