using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Core.Policy;
using Ferry.Core.Reporting;
using Ferry.Vm.Machine;
using static Ferry.Bench.BenchFormat;

namespace Ferry.Bench;

/// <summary>
/// `postcopy`: the same guest migrated by each technique over a bandwidth-limited loopback link,
/// to set pre-copy's downtime and total time against post-copy's fault count, fault latency,
/// resume time and the guest's degradation. <c>--page-install</c> picks the destination's post-copy
/// fault path: uffd (kernel traps, resolver thread) or copy (software present-bitmap checks).
/// The guest is memtouch, or an idle one whose working set holds random bytes written before it
/// starts (the same pages to move, and nothing dirtied while they move).
/// </summary>
internal static class PostCopyBenchmark
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(10);

    public sealed record Settings
    {
        public long MemoryBytes { get; init; }
        public long WssBytes { get; init; }
        public long Rate { get; init; }
        public long BandwidthBytesPerSecond { get; init; }
        public int Vcpus { get; init; }
        public int Repeats { get; init; }
        public int MaxRounds { get; init; }
        public IReadOnlyList<string> Techniques { get; init; } = [];
        public string Workload { get; init; } = "";
        public bool Idle { get; init; }
        public IReadOnlyList<string> PageInstalls { get; init; } = [];
    }

    public sealed record Run
    {
        public string Technique { get; init; } = "";
        public string PageInstall { get; init; } = "";
        public string FaultPath { get; init; } = "";
        public int Repeat { get; init; }
        public double TotalMs { get; init; }
        public double DowntimeMs { get; init; }
        public double ResumeMs { get; init; }
        public long WireBytes { get; init; }
        public int LiveRounds { get; init; }
        public bool PostCopyUsed { get; init; }
        public long Faults { get; init; }
        public double FaultP50Ms { get; init; }
        public double FaultP99Ms { get; init; }
        public double FaultMaxMs { get; init; }
        public long DemandPages { get; init; }
        public long PrePagedPages { get; init; }
        public long PushPages { get; init; }
        public long ZeroFilledLocally { get; init; }
        public double BaselineOpsPerSecond { get; init; }
        public long SourceOps { get; init; }
        public long DestinationOps { get; init; }
        public long? ResumeOps { get; init; }
        public double DegradationPercent { get; init; }
        public double LiveDegradationPercent { get; init; }
        public double? ResumeDegradationPercent { get; init; }
        public string StopReason { get; init; } = "";
        public MigrationReport? Report { get; init; }
    }

    public static int Execute(BenchArgs args)
    {
        var techniques = new List<MigrationTechnique>();
        foreach (string name in (args.String("techniques") ?? "precopy,postcopy,hybrid,auto").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            techniques.Add(MigrationTechniqueNames.TryParse(name, out var t) ? t : throw new BenchUsageException($"--techniques: '{name}' is not one of {MigrationTechniqueNames.AllNames}"));
        }
        bool idle = (args.String("workload") ?? "memtouch").Trim().ToLowerInvariant() switch
        {
            "memtouch" => false,
            "idle" => true,
            var other => throw new BenchUsageException($"--workload: '{other}' is not one of memtouch, idle"),
        };
        long wss = args.Bytes("wss", 128L << 20);
        if (idle && args.String("rate") is not null)
        {
            throw new BenchUsageException("--rate applies to --workload memtouch only (an idle guest writes nothing)");
        }
        long rate = idle ? 0 : args.Int("rate", 50_000, 1, 10_000_000);
        var settings = new Settings
        {
            MemoryBytes = args.Bytes("memory", 256L << 20),
            WssBytes = wss,
            Rate = rate,
            BandwidthBytesPerSecond = args.Rate("bandwidth", 125_000_000),
            Vcpus = args.Int("vcpus", 2, 1, 64),
            Repeats = args.Int("repeats", 3, 1, 50),
            MaxRounds = args.Int("max-rounds", 10, 1, 1000),
            Techniques = techniques.Select(t => t.ToWire()).ToArray(),
            Workload = idle ? "idle" : $"memtouch:rate={rate},wss={wss >> 20}MiB,pattern=uniform,content=random,seed=7",
            Idle = idle,
        };
        IReadOnlyList<PageInstallChoice> installs = args.PageInstallList("page-install", "auto");
        settings = settings with { PageInstalls = installs.Select(BenchArgs.Name).ToArray() };
        string? outPath = args.String("out");
        bool noWarmup = args.Flag("no-warmup");
        args.RejectUnknown();

        var env = BenchEnvironment.Capture();
        DateTimeOffset startedAt = DateTimeOffset.Now;
        Console.WriteLine($"# Ferry bench: postcopy (techniques compared, {settings.BandwidthBytesPerSecond / 1e6:0.#} MB/s limit, loopback TCP)");
        Console.WriteLine();
        Console.WriteLine($"- VM: {settings.MemoryBytes >> 20} MiB RAM, {settings.Vcpus} vCPUs, workload `{settings.Workload}`" +
            (idle ? $", {settings.WssBytes >> 20} MiB of random bytes written before it starts" : ""));
        Console.WriteLine($"- pre-copy policy: default plus round cap {settings.MaxRounds}; hybrid: 1 round; {settings.Repeats} repeat(s), medians reported");
        Console.WriteLine($"- runtime: {env.Runtime}, {env.ProcessorCount} CPUs, tiered compilation {env.TieredCompilation}, load average {env.LoadAverageAtStart}");
        Console.WriteLine();
        if (!noWarmup)
        {
            Progress("warm-up (untimed): one small post-copy and one small pre-copy migration");
            var warmup = settings with { MemoryBytes = 64L << 20, WssBytes = 16L << 20, Workload = "memtouch:rate=5000,wss=16MiB,seed=7", Idle = false };
            foreach (PageInstallChoice install in installs)
            {
                RunOnce(MigrationTechnique.PostCopy, install, 0, warmup);
            }
            RunOnce(MigrationTechnique.PreCopy, installs[0], 0, warmup);
        }

        var runs = new List<Run>();
        for (int r = 1; r <= settings.Repeats; r++)
        {
            foreach (MigrationTechnique t in techniques)
            foreach (PageInstallChoice install in installs)
            {
                Progress($"{Label(t, install, installs)}, repeat {r}");
                Run run = RunOnce(t, install, r, settings);
                runs.Add(run);
                Progress($"  total {run.TotalMs:0} ms, downtime {run.DowntimeMs:0.0} ms, resume {run.ResumeMs:0} ms, faults {run.Faults} (p50 {run.FaultP50Ms:0.00} / p99 {run.FaultP99Ms:0.00} ms), " +
                    $"ops at the source {run.SourceOps} / destination {run.DestinationOps}, degradation % whole {run.DegradationPercent:0.0} / live {run.LiveDegradationPercent:0.0} / resume {Percent(run.ResumeDegradationPercent)}");
            }
        }

        var table = new MarkdownTable("technique", "total ms", "downtime ms", "resume ms", "live rounds", "wire MiB", "faults",
            "fault p50 ms", "fault p99 ms", "fault max ms", "demand / pre-paged / pushed", "zero-filled", "degradation % whole / live / resume");
        var inv = CultureInfo.InvariantCulture;
        foreach (MigrationTechnique t in techniques)
        foreach (PageInstallChoice install in installs)
        {
            var mine = runs.Where(x => x.Technique == t.ToWire() && x.PageInstall == BenchArgs.Name(install)).ToList();
            table.Add(Label(t, install, installs),
                Stats.Median(mine.Select(x => x.TotalMs)).ToString("0", inv),
                Stats.Median(mine.Select(x => x.DowntimeMs)).ToString("0.0", inv),
                Stats.Median(mine.Select(x => x.ResumeMs)).ToString("0", inv),
                Stats.Median(mine.Select(x => (double)x.LiveRounds)).ToString("0", inv),
                Stats.Median(mine.Select(x => x.WireBytes / 1048576.0)).ToString("0", inv),
                Stats.Median(mine.Select(x => (double)x.Faults)).ToString("0", inv),
                Stats.Median(mine.Select(x => x.FaultP50Ms)).ToString("0.00", inv),
                Stats.Median(mine.Select(x => x.FaultP99Ms)).ToString("0.00", inv),
                Stats.Median(mine.Select(x => x.FaultMaxMs)).ToString("0.00", inv),
                string.Create(inv, $"{Stats.Median(mine.Select(x => (double)x.DemandPages)):0} / {Stats.Median(mine.Select(x => (double)x.PrePagedPages)):0} / {Stats.Median(mine.Select(x => (double)x.PushPages)):0}"),
                Stats.Median(mine.Select(x => (double)x.ZeroFilledLocally)).ToString("0", inv),
                Degradation(mine));
        }
        Console.WriteLine(table);
        Console.WriteLine(idle
            ? "Degradation: – for an idle guest (no baseline: it does no work to lose)."
            : "Degradation (medians): whole = 1 − (guest ops at the source until the pause + at the destination after the resume) ÷ total time ÷ baseline, " +
              "the downtime counting as no work; live = the source's live rounds alone; resume = the destination's rate while pages were still missing " +
              "(– without a resume phase: pre-copy, or auto that did not switch).");

        ResultFile.Publish("postcopy", args, startedAt, env, settings, new { }, runs, outPath);
        return 0;
    }

    /// <summary>whole / live / resume medians; – where a guest has no baseline, or no run had a resume phase.</summary>
    private static string Degradation(IReadOnlyList<Run> runs)
    {
        if (runs.All(x => x.BaselineOpsPerSecond <= 0))
        {
            return "–";
        }
        var resume = runs.Where(x => x.ResumeDegradationPercent is not null).Select(x => x.ResumeDegradationPercent!.Value).ToList();
        // Without live rounds (pure post-copy) the live span is only the offer, a few ms: its rate is noise.
        string live = runs.Any(x => x.LiveRounds > 0) ? Stats.Median(runs.Select(x => x.LiveDegradationPercent)).ToString("0.0", CultureInfo.InvariantCulture) : "–";
        return string.Create(CultureInfo.InvariantCulture,
            $"{Stats.Median(runs.Select(x => x.DegradationPercent)):0.0} / {live} / {(resume.Count > 0 ? Stats.Median(resume).ToString("0.0", CultureInfo.InvariantCulture) : "–")}");
    }

    private static string Percent(double? value) => value is { } v ? v.ToString("0.0", CultureInfo.InvariantCulture) : "–";

    /// <summary>The technique, and the page install (the post-copy fault path) when more than one is compared.</summary>
    private static string Label(MigrationTechnique t, PageInstallChoice install, IReadOnlyList<PageInstallChoice> installs) =>
        installs.Count > 1 ? $"{t.ToWire()} ({BenchArgs.Name(install)})" : t.ToWire();

    private static Run RunOnce(MigrationTechnique technique, PageInstallChoice install, int repeat, Settings s)
    {
        using var vm = VirtualMachine.Create(new VmConfig { Name = "bench-postcopy", MemoryBytes = s.MemoryBytes, Vcpus = s.Vcpus, Workload = s.Workload });
        if (s.Idle)
        {
            WriteWorkingSet(vm, s.WssBytes);
        }
        vm.Start();
        Thread.Sleep(TimeSpan.FromSeconds(1.2));
        var options = new MigrationOptions
        {
            Technique = technique,
            MaxBandwidthBytesPerSecond = s.BandwidthBytesPerSecond,
            BaselineWindow = TimeSpan.FromSeconds(1),
            PreCopy = new PreCopyOptions { MaxRounds = s.MaxRounds },
        };
        LoopbackMigration.Result m = LoopbackMigration.Run(vm, options, install, $"bench-pc-{technique.ToWire()}-{repeat}", RunTimeout);
        MigrationReport r = m.Report;
        if (r.Outcome != MigrationOutcome.Completed || !r.Verification.DigestsMatch)
        {
            throw new InvalidOperationException($"{technique.ToWire()} repeat {repeat}: outcome {r.Outcome}, error {r.Error ?? m.DestinationError ?? "none"}");
        }
        PostCopyMetrics pc = r.PostCopy;
        return new Run
        {
            Technique = technique.ToWire(),
            PageInstall = BenchArgs.Name(install),
            FaultPath = pc.FaultPath,
            Repeat = repeat,
            TotalMs = r.Timing.TotalMs,
            DowntimeMs = r.Timing.DowntimeMs,
            ResumeMs = r.Timing.ResumeMs,
            WireBytes = r.Pages.WireBytes,
            LiveRounds = r.Rounds.Count(x => x.Kind == "live"),
            PostCopyUsed = pc.Used,
            Faults = pc.Faults,
            FaultP50Ms = pc.FaultLatencyP50Ms,
            FaultP99Ms = pc.FaultLatencyP99Ms,
            FaultMaxMs = pc.FaultLatencyMaxMs,
            DemandPages = pc.DemandPages,
            PrePagedPages = pc.PrePagedPages,
            PushPages = pc.PushPages,
            ZeroFilledLocally = pc.ZeroFilledLocally,
            BaselineOpsPerSecond = r.Degradation.BaselineOpsPerSecond,
            SourceOps = r.Degradation.SourceOps,
            DestinationOps = r.Degradation.DestinationOps,
            ResumeOps = r.Degradation.ResumeOps,
            DegradationPercent = r.Degradation.DegradationPercent,
            LiveDegradationPercent = r.Degradation.LiveDegradationPercent,
            ResumeDegradationPercent = r.Degradation.ResumeDegradationPercent,
            StopReason = r.StopReason ?? "",
            Report = r,
        };
    }

    /// <summary>An idle guest's data: the first <paramref name="bytes"/> of RAM, random, as memtouch's working set would hold.</summary>
    private static void WriteWorkingSet(VirtualMachine vm, long bytes)
    {
        var rng = new Random(7);
        byte[] page = new byte[PageSize.Bytes];
        long pages = Math.Min(vm.Memory.PageCount, PageSize.PagesFor(bytes));
        for (long p = 0; p < pages; p++)
        {
            rng.NextBytes(page);
            vm.Memory.Write(p, 0, page);
        }
    }
}
