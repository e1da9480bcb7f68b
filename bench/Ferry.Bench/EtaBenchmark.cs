using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Progress;
using Ferry.Core.Reporting;
using Ferry.Core.Tracking;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Engine.Source;
using Ferry.Transport;
using Ferry.Vm.Machine;
using Ferry.Vm.Tracking;
using static Ferry.Bench.BenchFormat;

namespace Ferry.Bench;

/// <summary>
/// `eta` (issue 9): is the live progress's ETA honest? Real migrations over loopback at a bandwidth
/// limit — an idle guest full of data, a memtouch guest that converges, one that never does (with a
/// round cap) — with the source's published progress sampled every 100–200 ms while they run.
/// Afterwards each sample's ETA is compared with the real remaining time (the report's total time
/// minus the sample's own elapsed time, both on the machine's clock), at 25, 50 and 75 % of the run,
/// and the first sample that says "not converging" is found.
/// </summary>
internal static class EtaBenchmark
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(10);
    private static readonly double[] Points = [0.25, 0.50, 0.75];

    public sealed record Case(string Name, string Workload, RamFill Fill, int? MaxRounds, string What);

    public sealed record Settings
    {
        public long MemoryBytes { get; init; }
        public long BandwidthBytesPerSecond { get; init; }
        public int MaxRounds { get; init; }
        public int SampleMs { get; init; }
        public int PageConnections { get; init; }
        public int Repeats { get; init; }
        public double BaselineSeconds { get; init; }
        public IReadOnlyList<string> Cases { get; init; } = [];
    }

    /// <summary>One sampled snapshot, as the API would have shown it.</summary>
    public sealed record Sample
    {
        public double ElapsedSeconds { get; init; }
        public string Phase { get; init; } = "";
        public int Round { get; init; }
        public EtaKind Kind { get; init; }
        public double? EtaSeconds { get; init; }
        public EtaBoundKind? Bound { get; init; }
        public int? BoundAtRound { get; init; }
        public double? BoundSeconds { get; init; }
        public double? RoundEtaSeconds { get; init; }
        public double? DirtiedPerSent { get; init; }
    }

    /// <summary>The ETA at one point of the run against the real remaining time.</summary>
    public sealed record Point
    {
        public double Share { get; init; }
        public double ElapsedSeconds { get; init; }
        public int Round { get; init; }
        public EtaKind Kind { get; init; }
        public double? EtaSeconds { get; init; }
        public double RealSeconds { get; init; }

        /// <summary>ETA ÷ real remaining time (1 = exact).</summary>
        public double? Ratio => EtaSeconds is { } e && RealSeconds > 0 ? e / RealSeconds : null;

        /// <summary>ETA − real remaining time (positive: the ETA said later than it was).</summary>
        public double? ErrorSeconds => EtaSeconds is { } e ? e - RealSeconds : null;
    }

    public sealed record Run
    {
        public string Case { get; init; } = "";
        public int Repeat { get; init; }
        public string Workload { get; init; } = "";
        public string Outcome { get; init; } = "";
        public double TotalSeconds { get; init; }
        public double PreparationSeconds { get; init; }
        public int LiveRounds { get; init; }
        public string StopReason { get; init; } = "";
        public string DirtyLogBackend { get; init; } = "";
        public string LoadAverage { get; init; } = "";
        public IReadOnlyList<Point> Points { get; init; } = [];
        public double? FirstEtaAtSeconds { get; init; }

        /// <summary>Median |ETA ÷ real − 1| over the samples with an ETA, before the first harvest and after it.</summary>
        public double? MedianAbsErrorRound1 { get; init; }
        public double? MedianAbsErrorLater { get; init; }

        public double? NotConvergingAtSeconds { get; init; }
        public int? NotConvergingAtRound { get; init; }
        public string? BoundWhenFlagged { get; init; }

        /// <summary>When the flagged bound said the live rounds would end (elapsed seconds), against when they did (the pause).</summary>
        public double? BoundPredictedEndOfRounds { get; init; }
        public IReadOnlyList<Sample> Samples { get; init; } = [];
        public MigrationReport? Report { get; init; }
    }

    public static int Execute(BenchArgs args)
    {
        int maxRounds = args.Int("max-rounds", 8, 1, 1000);
        var all = new[]
        {
            new Case("idle", "idle", RamFill.Random, null, "idle guest, RAM full of random bytes"),
            new Case("converging", "memtouch:rate=5000,wss=64MiB,pattern=uniform,seed=7", RamFill.Random, null,
                "memtouch 5,000 writes/s over 64 MiB, RAM full of random bytes"),
            new Case("nonconverging", "memtouch:rate=20000,wss=64MiB,pattern=uniform,seed=7", RamFill.None, maxRounds,
                $"memtouch 20,000 writes/s over 64 MiB (no fill), round cap {maxRounds}"),
        };
        IReadOnlyList<string> names = args.WordList("cases", "idle,converging,nonconverging", "idle", "converging", "nonconverging");
        var cases = all.Where(c => names.Contains(c.Name)).ToList();
        var settings = new Settings
        {
            MemoryBytes = args.Bytes("memory", 512L << 20),
            BandwidthBytesPerSecond = args.Rate("bandwidth", 30_000_000),
            MaxRounds = maxRounds,
            SampleMs = args.Int("sample-ms", 150, 100, 200),
            PageConnections = args.Int("connections", 2, 0, MigrationOptions.MaxPageConnections),
            Repeats = args.Int("repeats", 1, 1, 20),
            BaselineSeconds = MigrationOptions.DefaultBaselineWindow.TotalSeconds,
            Cases = cases.Select(c => c.Name).ToArray(),
        };
        string? outPath = args.String("out");
        bool noWarmup = args.Flag("no-warmup");
        args.RejectUnknown();

        var env = BenchEnvironment.Capture();
        DateTimeOffset startedAt = DateTimeOffset.Now;
        Console.WriteLine($"# Ferry bench: eta (live progress ETA against the real remaining time, {settings.BandwidthBytesPerSecond / 1e6:0.#} MB/s limit, loopback TCP)");
        Console.WriteLine();
        Console.WriteLine($"- VM: {settings.MemoryBytes >> 20} MiB RAM, 1 vCPU; pre-copy with the default policy (downtime limit 300 ms, 30 × RAM, 1 h) and each case's round cap; " +
                          $"{settings.PageConnections} page connection(s) (ferry migrate's default is 2)");
        foreach (Case c in cases)
        {
            Console.WriteLine($"  - `{c.Name}`: {c.What} (`{c.Workload}`)");
        }
        Console.WriteLine($"- each run: VM started, runs {settings.BaselineSeconds:0} s, then migrates; the source's progress is sampled every {settings.SampleMs} ms; {settings.Repeats} repeat(s)");
        Console.WriteLine("- real remaining time = report total − the sample's elapsed time (both on the source machine's clock); " +
                          "the point at p % is the sample nearest p × total");
        Console.WriteLine($"- runtime: {env.Runtime}, {env.ProcessorCount} CPUs, tiered compilation {env.TieredCompilation}, load average {env.LoadAverageAtStart}");
        Console.WriteLine();

        if (!noWarmup)
        {
            Progress("warm-up (untimed): 64 MiB idle, random fill, unlimited");
            using VirtualMachine vm = Create(new Case("warmup", "idle", RamFill.Random, null, ""), 64L << 20);
            vm.Start();
            Migrate(vm, new MigrationOptions { PageConnections = settings.PageConnections }, TimeSpan.FromMilliseconds(settings.SampleMs), "bench-eta-warmup");
        }

        var runs = new List<Run>();
        for (int r = 1; r <= settings.Repeats; r++)
        {
            foreach (Case c in cases)
            {
                Progress($"{c.Name}, repeat {r}: {c.Workload}");
                Run run = RunOnce(c, r, settings);
                runs.Add(run);
                Progress($"  {run.Outcome}: total {run.TotalSeconds:0.0} s, {run.LiveRounds} live rounds, {run.StopReason}; " +
                         string.Join(", ", run.Points.Select(p => $"{p.Share:P0}: {Eta(p)}")) +
                         (run.NotConvergingAtSeconds is { } f ? $"; not converging flagged at {f:0.0} s (round {run.NotConvergingAtRound})" : ""));
            }
        }
        Print(runs, settings);
        ResultFile.Publish("eta", args, startedAt, env, settings, runs.Select(Summary).ToList(), runs, outPath);
        return 0;
    }

    private static VirtualMachine Create(Case c, long memory) => VirtualMachine.Create(new VmConfig
    {
        Name = "bench-eta-" + c.Name,
        MemoryBytes = memory,
        Vcpus = 1,
        Workload = c.Workload,
        Fill = c.Fill,
    });

    private static Run RunOnce(Case c, int repeat, Settings s)
    {
        using VirtualMachine vm = Create(c, s.MemoryBytes);
        vm.Start();
        Thread.Sleep(TimeSpan.FromSeconds(s.BaselineSeconds) + TimeSpan.FromMilliseconds(150));
        string load = BenchEnvironment.LoadAverage();
        var options = new MigrationOptions
        {
            Technique = MigrationTechnique.PreCopy,
            MaxBandwidthBytesPerSecond = s.BandwidthBytesPerSecond,
            PreCopy = new PreCopyOptions { MaxRounds = c.MaxRounds },
            PageConnections = s.PageConnections,
        };
        (MigrationReport rep, List<Sample> samples) = Migrate(vm, options, TimeSpan.FromMilliseconds(s.SampleMs), $"bench-eta-{c.Name}-{repeat}");
        if (rep.Outcome != MigrationOutcome.Completed || !rep.Verification.DigestsMatch)
        {
            throw new InvalidOperationException($"{c.Name} repeat {repeat}: migration did not complete cleanly: outcome {rep.Outcome}, error {rep.Error ?? "none"}");
        }
        double total = rep.Timing.TotalMs / 1000;
        // Only snapshots of the migration in progress count (the last one, at the end, is "completed").
        var during = samples.Where(x => x.ElapsedSeconds > 0 && x.ElapsedSeconds < total).ToList();
        var points = Points.Select(p =>
        {
            Sample at = during.MinBy(x => Math.Abs(x.ElapsedSeconds - p * total))!;
            return new Point
            {
                Share = p,
                ElapsedSeconds = at.ElapsedSeconds,
                Round = at.Round,
                Kind = at.Kind,
                EtaSeconds = at.EtaSeconds,
                RealSeconds = total - at.ElapsedSeconds,
            };
        }).ToList();
        int liveRounds = rep.Rounds.Count(x => x.Kind == "live");
        Sample? flagged = during.FirstOrDefault(x => x.Kind == EtaKind.NotConverging);
        double? MedianError(IEnumerable<Sample> xs)
        {
            var errs = xs.Where(x => x.EtaSeconds is not null && total - x.ElapsedSeconds > 0.5)
                .Select(x => Math.Abs(x.EtaSeconds!.Value / (total - x.ElapsedSeconds) - 1)).ToList();
            return errs.Count > 0 ? Stats.Median(errs) : null;
        }
        return new Run
        {
            Case = c.Name,
            Repeat = repeat,
            Workload = c.Workload,
            Outcome = rep.Outcome.ToWire(),
            TotalSeconds = total,
            PreparationSeconds = rep.Timing.PreparationMs / 1000,
            LiveRounds = liveRounds,
            StopReason = rep.StopReason ?? "",
            DirtyLogBackend = rep.DirtyLog.Backend,
            LoadAverage = load,
            Points = points,
            FirstEtaAtSeconds = during.FirstOrDefault(x => x.EtaSeconds is not null)?.ElapsedSeconds,
            MedianAbsErrorRound1 = MedianError(during.Where(x => x.Round <= 1 && x.Phase == "precopy")),
            MedianAbsErrorLater = MedianError(during.Where(x => !(x.Round <= 1 && x.Phase == "precopy"))),
            NotConvergingAtSeconds = flagged?.ElapsedSeconds,
            NotConvergingAtRound = flagged?.Round,
            BoundWhenFlagged = flagged is { Bound: { } b } ? $"{b} at round {flagged.BoundAtRound} in {flagged.BoundSeconds:0.0} s" : null,
            BoundPredictedEndOfRounds = flagged?.BoundSeconds is { } bs ? flagged.ElapsedSeconds + bs : null,
            Samples = samples,
            Report = rep,
        };
    }

    /// <summary>
    /// One migration as the agent sets it up (the dirty log from <see cref="DirtyLogFactory"/>, the
    /// destination's idle timeout on its socket, the agent's socket buffers), with the source on its
    /// own thread so this one can sample its published progress.
    /// </summary>
    private static (MigrationReport Report, List<Sample> Samples) Migrate(VirtualMachine vm, MigrationOptions options, TimeSpan sampleEvery, string id)
    {
        using var cts = new CancellationTokenSource(RunTimeout);
        var limits = new DestinationLimits
        {
            PageInstall = PageInstallChoice.Auto,
            PageChannels = options.PageConnections > 0 ? new PageChannelRegistry() : null,
        };
        // Page connections arrive as an agent's listener would hand them over (as LoopbackMigration does).
        LoopbackLinks? links = options.PageConnections > 0
            ? new LoopbackLinks(LoopbackMigration.Transport,
                c => new DestinationMigration(c.Stream, HostIdentity.Local("127.0.0.1 (bench destination)"), limits).RunOrResume(cts.Token)?.Dispose())
            : null;
        using IDirtyLog log = DirtyLogFactory.Create(vm.Memory, options.DirtyLog, workload: vm.Workload);
        var (client, server) = LoopbackPair.Open(LoopbackMigration.Transport);
        server.Socket.ReceiveTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
        server.Socket.SendTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
        VirtualMachine? received = null;
        var dest = new Thread(() =>
        {
            try
            {
                received = new DestinationMigration(server.Stream, HostIdentity.Local("127.0.0.1 (bench destination)"), limits).Run(cts.Token);
            }
            catch (Exception)
            {
                // The source's report says why.
            }
            finally
            {
                server.Dispose();
            }
        })
        { IsBackground = true, Name = "bench-eta-destination" };
        dest.Start();
        var source = new SourceMigration(id, vm, client.Stream, options, log,
            HostIdentity.Local("127.0.0.1 (bench source)"), HostIdentity.Local("127.0.0.1 (bench destination)"), links);
        SourceResult? result = null;
        Exception? error = null;
        var src = new Thread(() =>
        {
            try
            {
                result = source.Run(cts.Token);
            }
            catch (Exception ex)
            {
                error = ex;
            }
        })
        { IsBackground = true, Name = "bench-eta-source" };
        src.Start();
        var samples = new List<Sample>();
        while (!src.Join(sampleEvery))
        {
            samples.Add(Of(source.Progress));
        }
        samples.Add(Of(source.Progress));
        client.Dispose();
        if (!dest.Join(TimeSpan.FromSeconds(30)))
        {
            throw new InvalidOperationException("destination thread did not finish in time");
        }
        received?.Dispose();
        if (result is null)
        {
            throw new InvalidOperationException($"{id}: the source failed: {error}");
        }
        return (result.Report, samples);
    }

    private static Sample Of(MigrationProgress p) => new()
    {
        ElapsedSeconds = p.ElapsedSeconds,
        Phase = p.Phase.ToWire(),
        Round = p.Round,
        Kind = p.EtaKind,
        EtaSeconds = p.EtaSeconds,
        Bound = p.EtaBound?.Kind,
        BoundAtRound = p.EtaBound?.AtRound,
        BoundSeconds = p.EtaBound?.Seconds,
        RoundEtaSeconds = p.RoundEtaSeconds,
        DirtiedPerSent = p.DirtiedPerSent,
    };

    private static object Summary(Run r) => new
    {
        r.Case,
        r.Repeat,
        r.TotalSeconds,
        r.LiveRounds,
        r.StopReason,
        Points = r.Points.Select(p => new { p.Share, p.ElapsedSeconds, p.Round, p.Kind, p.EtaSeconds, p.RealSeconds, p.Ratio, p.ErrorSeconds }),
        r.FirstEtaAtSeconds,
        r.MedianAbsErrorRound1,
        r.MedianAbsErrorLater,
        r.NotConvergingAtSeconds,
        r.NotConvergingAtRound,
        r.BoundWhenFlagged,
        r.BoundPredictedEndOfRounds,
    };

    private static string Eta(Point p) => p.EtaSeconds is { } e
        ? string.Create(CultureInfo.InvariantCulture, $"{e:0.0} s vs {p.RealSeconds:0.0} s")
        : string.Create(CultureInfo.InvariantCulture, $"unknown vs {p.RealSeconds:0.0} s");

    private static string Cell(Point p)
    {
        var inv = CultureInfo.InvariantCulture;
        string kind = p.Kind switch { EtaKind.NotConverging => " (nc)", EtaKind.Unknown => " (unknown)", _ => "" };
        return p.EtaSeconds is { } e
            ? string.Create(inv, $"{e:0.0} / {p.RealSeconds:0.0}: ×{p.Ratio:0.00}, {Signed(p.ErrorSeconds!.Value)} s{kind}, r{p.Round}")
            : string.Create(inv, $"— / {p.RealSeconds:0.0}{kind}, r{p.Round}");
    }

    private static void Print(List<Run> runs, Settings s)
    {
        var inv = CultureInfo.InvariantCulture;
        var t = new MarkdownTable("case", "rep", "total s", "live rounds", "stop", "25 %: ETA / real s: ratio, error", "50 %", "75 %",
            "median |error| round 1 / later", "not converging flagged");
        foreach (Run r in runs)
        {
            string flagged = r.NotConvergingAtSeconds is { } f
                ? string.Create(inv, $"at {f:0.0} s ({f / r.TotalSeconds:P0} of the run), round {r.NotConvergingAtRound}; {r.BoundWhenFlagged}; " +
                                     $"predicted end of rounds {r.BoundPredictedEndOfRounds:0.0} s, paused at {r.PreparationSeconds:0.0} s")
                : "never";
            string med = $"{Pct(r.MedianAbsErrorRound1)} / {Pct(r.MedianAbsErrorLater)}";
            t.Add(r.Case, r.Repeat.ToString(inv), r.TotalSeconds.ToString("0.0", inv), r.LiveRounds.ToString(inv), Short(r.StopReason),
                Cell(r.Points[0]), Cell(r.Points[1]), Cell(r.Points[2]), med, flagged);
        }
        Console.WriteLine("## ETA against the real remaining time");
        Console.WriteLine();
        Console.WriteLine(t);
        Console.WriteLine("Cells: shown ETA / real remaining seconds: ETA ÷ real, ETA − real; (nc) = the progress said not converging, " +
                          "(unknown) = no ETA shown; rN = the round in flight. Median |error| = median over all samples of |ETA ÷ real − 1| " +
                          "(samples more than 0.5 s before the end), while round 1 runs and after it.");
        Console.WriteLine();
        Console.WriteLine($"> {BenchEnvironment.MachineCaveat}");
        Console.WriteLine();
    }

    private static string Signed(double v)
    {
        string abs = Math.Abs(v).ToString("0.0", CultureInfo.InvariantCulture);
        return abs == "0.0" ? "±0.0" : (v > 0 ? "+" : "−") + abs;
    }

    private static string Pct(double? v) => v is { } x ? (x * 100).ToString("0", CultureInfo.InvariantCulture) + " %" : "n/a";

    private static string Short(string reason) =>
        reason.StartsWith("converged", StringComparison.Ordinal) ? "converged"
        : reason.StartsWith("round cap", StringComparison.Ordinal) ? "round cap"
        : reason.StartsWith("sent ", StringComparison.Ordinal) ? "RAM multiple"
        : reason;
}
