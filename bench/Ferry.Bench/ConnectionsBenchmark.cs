using System.Diagnostics;
using System.Globalization;
using System.Net;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Ferry.Transport;
using Ferry.Transport.Tls;
using Ferry.Vm.Machine;
using static Ferry.Bench.BenchFormat;

namespace Ferry.Bench;

/// <summary>
/// `connections`: the stream migration (idle VM of random bytes, pre-copy, no limit, loopback) over
/// 0, 1, 2, 4 page connections and over TLS, each held against raw TCP measured in the same
/// repeat, with the CPU every migration cost the whole process per GB moved (both ends run here).
/// Variants rotate their order from one repeat to the next; the VM is filled once per repeat.
/// </summary>
internal static class ConnectionsBenchmark
{
    private static readonly TimeSpan MigrationTimeout = TimeSpan.FromMinutes(10);
    private static readonly TimeSpan TcpTimeout = TimeSpan.FromMinutes(5);

    /// <summary>One way to connect: page connections beside the control one, and TLS or not.</summary>
    public sealed record Variant(int PageConnections, bool Tls)
    {
        public string Name => $"{PageConnections} page conn{(Tls ? " + TLS" : "")}";
    }

    public sealed record Run
    {
        public int Repeat { get; init; }
        public string Variant { get; init; } = "";
        public int PageConnections { get; init; }
        public int PageConnectionsUsed { get; init; }
        public bool Tls { get; init; }
        public long WireBytes { get; init; }
        public double MigrationMs { get; init; }
        public double BytesPerSecond { get; init; }
        public double RawTcpBytesPerSecond { get; init; }
        public double Ratio { get; init; }
        public double ProcessCpuSeconds { get; init; }
        public double CpuSecondsPerGb { get; init; }
        public double RawTcpCpuSecondsPerGb { get; init; }
        public double DowntimeMs { get; init; }
        public string PageInstall { get; init; } = "";
        public string LoadAverage { get; init; } = "";
    }

    public sealed record Summary
    {
        public string Variant { get; init; } = "";
        public double MedianBytesPerSecond { get; init; }
        public double MedianRatio { get; init; }
        public double MinRatio { get; init; }
        public double MaxRatio { get; init; }
        public double MedianCpuSecondsPerGb { get; init; }
        public double MedianRawTcpCpuSecondsPerGb { get; init; }
        public double MedianDowntimeMs { get; init; }
    }

    public static int Execute(BenchArgs args)
    {
        long memory = args.Bytes("memory", 1L << 30);
        int repeats = args.Int("repeats", 3, 1, 50);
        PageInstallChoice install = args.PageInstall();
        int[] counts = args.WordList("connections", "0,1,2,4", "0", "1", "2", "4", "8").Select(int.Parse).ToArray();
        IReadOnlyList<string> tlsModes = args.WordList("tls", "off,on", "off", "on");
        bool warmup = !args.Flag("no-warmup");
        string? outPath = args.String("out");
        args.RejectUnknown();

        // TLS: a throwaway CA and one certificate for both ends (both are 127.0.0.1 here).
        using TestAuthority ca = TestAuthority.Create("ferry bench CA", TimeSpan.FromDays(1));
        using var host = ca.Issue("localhost", [IPAddress.Loopback], TimeSpan.FromDays(1));
        var tls = new TlsOptions { Certificate = host, Authority = ca.Certificate };
        var variants = (from t in tlsModes from n in counts select new Variant(n, t == "on"))
            // TLS is measured on the default layout (2 page connections) and on one connection; not every count.
            .Where(v => !v.Tls || v.PageConnections is 0 or 2).ToList();

        var env = BenchEnvironment.Capture();
        DateTimeOffset startedAt = DateTimeOffset.Now;
        Console.WriteLine($"# Ferry bench: connections ({Mib(memory)} MiB idle VM, random pages, pre-copy, no bandwidth limit, loopback, --page-install {BenchArgs.Name(install)})");
        Console.WriteLine();
        Console.WriteLine($"- runtime: {env.Runtime}, {env.ProcessorCount} CPUs, tiered compilation {env.TieredCompilation}, load average {env.LoadAverageAtStart}");
        Console.WriteLine($"- variants: {string.Join(", ", variants.Select(v => v.Name))}; repeats: {repeats}, order rotating; raw TCP (1 stream, same bytes) after each");
        Console.WriteLine();
        if (warmup)
        {
            Progress("warm-up: one small migration per variant");
            using VirtualMachine vm = Filled(64L << 20);
            vm.Start();
            foreach (Variant v in variants)
            {
                if (vm.State == VmRunState.Paused)
                {
                    vm.Resume();
                }
                Require(LoopbackMigration.Run(vm, Options(), install, "bench-conn-warmup", MigrationTimeout, v.PageConnections, Transport(v, tls)), "warm-up");
            }
        }
        var runs = new List<Run>();
        for (int r = 1; r <= repeats; r++)
        {
            Progress($"repeat {r}: filling {Mib(memory)} MiB");
            using VirtualMachine vm = Filled(memory);
            vm.Start();
            for (int i = 0; i < variants.Count; i++)
            {
                Variant v = variants[(i + r - 1) % variants.Count];
                if (vm.State == VmRunState.Paused)
                {
                    vm.Resume();
                }
                TimeSpan cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                LoopbackMigration.Result m = LoopbackMigration.Run(vm, Options(), install, $"bench-conn-{r}-{i}", MigrationTimeout, v.PageConnections, Transport(v, tls));
                double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
                Require(m, v.Name);
                MigrationReport rep = m.Report;
                long wire = rep.Pages.WireBytes;
                TimeSpan tcpCpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                RawTcp.Result tcp = RawTcp.Measure(wire, TcpTimeout);
                double tcpCpu = (Process.GetCurrentProcess().TotalProcessorTime - tcpCpu0).TotalSeconds;
                double rate = wire / (rep.Timing.TotalMs / 1000);
                var run = new Run
                {
                    Repeat = r,
                    Variant = v.Name,
                    PageConnections = v.PageConnections,
                    PageConnectionsUsed = rep.Settings.PageConnectionsUsed,
                    Tls = v.Tls,
                    WireBytes = wire,
                    MigrationMs = rep.Timing.TotalMs,
                    BytesPerSecond = rate,
                    RawTcpBytesPerSecond = tcp.BytesPerSecond,
                    Ratio = rate / tcp.BytesPerSecond,
                    ProcessCpuSeconds = cpu,
                    CpuSecondsPerGb = cpu / (wire / 1e9),
                    RawTcpCpuSecondsPerGb = tcpCpu / (wire / 1e9),
                    DowntimeMs = rep.Timing.DowntimeMs,
                    PageInstall = rep.PageInstall.Backend,
                    LoadAverage = BenchEnvironment.LoadAverage(),
                };
                runs.Add(run);
                Progress($"repeat {r}, {v.Name}: {Gbs(rate)} GB/s, raw TCP {Gbs(tcp.BytesPerSecond)} GB/s, ratio {F(run.Ratio)}, CPU {F(run.CpuSecondsPerGb)} s/GB");
            }
        }
        var summaries = variants.Select(v => Summarise(v.Name, runs)).ToList();
        Print(runs, summaries);
        ResultFile.Publish("connections", args, startedAt, env, new { memory, repeats, install = BenchArgs.Name(install), variants }, summaries, runs, outPath);
        return 0;
    }

    private static TransportOptions Transport(Variant v, TlsOptions tls) => LoopbackMigration.Transport with { Tls = v.Tls ? tls : null };

    private static MigrationOptions Options() => new() { Technique = MigrationTechnique.PreCopy, MaxBandwidthBytesPerSecond = 0 };

    private static VirtualMachine Filled(long memory) => VirtualMachine.Create(new VmConfig
    {
        Name = "bench-connections",
        MemoryBytes = memory,
        Vcpus = 1,
        Workload = "idle",
        Fill = RamFill.Random,
    });

    private static void Require(LoopbackMigration.Result m, string what)
    {
        if (m.Report.Outcome != MigrationOutcome.Completed || !m.Report.Verification.DigestsMatch)
        {
            throw new InvalidOperationException($"{what}: migration did not complete cleanly: {m.Report.Outcome}, {m.Report.Error ?? m.DestinationError ?? "no error"}");
        }
    }

    private static Summary Summarise(string variant, IEnumerable<Run> all)
    {
        Run[] runs = all.Where(r => r.Variant == variant).ToArray();
        return new Summary
        {
            Variant = variant,
            MedianBytesPerSecond = Stats.Median(runs.Select(r => r.BytesPerSecond)),
            MedianRatio = Stats.Median(runs.Select(r => r.Ratio)),
            MinRatio = Stats.Min(runs.Select(r => r.Ratio)),
            MaxRatio = Stats.Max(runs.Select(r => r.Ratio)),
            MedianCpuSecondsPerGb = Stats.Median(runs.Select(r => r.CpuSecondsPerGb)),
            MedianRawTcpCpuSecondsPerGb = Stats.Median(runs.Select(r => r.RawTcpCpuSecondsPerGb)),
            MedianDowntimeMs = Stats.Median(runs.Select(r => r.DowntimeMs)),
        };
    }

    private static void Print(IReadOnlyList<Run> runs, IReadOnlyList<Summary> summaries)
    {
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine("## Every run");
        Console.WriteLine();
        var t = new MarkdownTable("repeat", "variant", "used", "migration s", "GB/s", "raw TCP GB/s", "ratio", "CPU s/GB (migration)", "CPU s/GB (raw TCP)", "downtime ms", "load");
        foreach (Run r in runs)
        {
            t.Add(r.Repeat.ToString(inv), r.Variant, r.PageConnectionsUsed.ToString(inv), (r.MigrationMs / 1000).ToString("0.00", inv), Gbs(r.BytesPerSecond),
                Gbs(r.RawTcpBytesPerSecond), F(r.Ratio), F(r.CpuSecondsPerGb), F(r.RawTcpCpuSecondsPerGb), r.DowntimeMs.ToString("0.0", inv), r.LoadAverage);
        }
        Console.WriteLine(t);
        Console.WriteLine("## Medians");
        Console.WriteLine();
        var s = new MarkdownTable("variant", "GB/s", "ratio to raw TCP (min–max)", "CPU s/GB", "raw TCP CPU s/GB", "downtime ms");
        foreach (Summary x in summaries)
        {
            s.Add(x.Variant, Gbs(x.MedianBytesPerSecond), $"{F(x.MedianRatio)} ({F(x.MinRatio)}–{F(x.MaxRatio)})", F(x.MedianCpuSecondsPerGb),
                F(x.MedianRawTcpCpuSecondsPerGb), x.MedianDowntimeMs.ToString("0.0", inv));
        }
        Console.WriteLine(s);
    }
}
