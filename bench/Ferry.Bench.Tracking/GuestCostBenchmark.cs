using System.Diagnostics;
using System.Globalization;
using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Core.Workloads;
using Ferry.Vm.Cpu;
using Ferry.Vm.Memory;
using Ferry.Vm.Programs;

namespace Ferry.Bench.Tracking;

/// <summary>
/// What tracking costs the guest: one vCPU runs memtouch unthrottled (8-byte writes, random
/// content) while, as during pre-copy, a second thread harvests the dirty log every
/// <see cref="HarvestInterval"/>. Modes: no tracking; software; kernel; and kernel with no
/// harvests (every page written once after Start, then measured), which shows that without
/// re-protection the kernel log costs a write nothing at all.
/// </summary>
internal static class GuestCostBenchmark
{
    public static readonly TimeSpan HarvestInterval = TimeSpan.FromMilliseconds(100);

    private static readonly string[] Modes = ["none", "software", "kernel", "kernel, no harvests"];

    public static void Run(IReadOnlyList<long> workingSets, TimeSpan duration, int repeats, TextWriter output)
    {
        // One short pass over every mode first, so no measured run pays first-use costs.
        foreach (string mode in Modes)
        {
            RunOne(4L << 20, "uniform", mode, TimeSpan.FromMilliseconds(300), seed: 99);
        }
        output.WriteLine($"| working set | pattern | tracking | writes/s (median) | min–max | ns/write | harvests/s | pages/harvest |");
        output.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (long wss in workingSets)
        {
            foreach (string pattern in new[] { "uniform", "sequential" })
            {
                // Modes interleave within each repeat, so slow drift on a shared machine hits all alike.
                var runs = Modes.ToDictionary(m => m, _ => new List<(double Rate, double Hps, double Pph)>());
                for (int r = 0; r < repeats; r++)
                {
                    foreach (string mode in Modes)
                    {
                        runs[mode].Add(RunOne(wss, pattern, mode, duration, seed: (ulong)r + 1));
                    }
                }
                foreach (string mode in Modes)
                {
                    double[] rates = runs[mode].Select(x => x.Rate).ToArray();
                    double median = Median.Of(rates);
                    bool harvested = mode is "software" or "kernel";
                    string hps = harvested ? runs[mode].Average(x => x.Hps).ToString("0.0", CultureInfo.InvariantCulture) : "–";
                    string pph = harvested ? runs[mode].Average(x => x.Pph).ToString("N0", CultureInfo.InvariantCulture) : "–";
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {HarvestBenchmark.Size(wss)} | {pattern} | {mode} | {median / 1e6:0.00} M | {rates.Min() / 1e6:0.00}–{rates.Max() / 1e6:0.00} M | {1e9 / median:0} | {hps} | {pph} |"));
                }
                output.Flush();
            }
        }
    }

    private static (double WritesPerSecond, double HarvestsPerSecond, double PagesPerHarvest) RunOne(long wss, string pattern, string mode, TimeSpan duration, ulong seed)
    {
        var spec = WorkloadSpec.Parse(string.Create(CultureInfo.InvariantCulture, $"memtouch:rate=0,wss={wss},pattern={pattern},content=random,bytes=8,seed={seed}"));
        using var memory = new GuestMemory(wss);
        // Populate the working set first: first-touch allocation is not a tracking cost.
        for (long p = 0; p < memory.PageCount; p++)
        {
            memory.Write(p, 0, [1]);
        }
        IDirtyLog? log = mode switch
        {
            "none" => null,
            "software" => Backends.Create("software", memory),
            _ => Backends.Create("kernel", memory),
        };
        try
        {
            log?.Start();
            if (mode == "kernel, no harvests")
            {
                // Take each page's one write-protect fault now, outside the measured window.
                for (long p = 0; p < memory.PageCount; p++)
                {
                    memory.Write(p, 0, [2]);
                }
            }
            var program = new MemTouchProgram(spec);
            var state = new VcpuState();
            program.Initialize(ref state, 0, 1, memory.PageCount);
            // Warm up the program's code paths and caches briefly before timing.
            program.Step(ref state, memory, 4096);

            using var stop = new CancellationTokenSource();
            long harvests = 0, harvestedPages = 0;
            Thread? harvester = null;
            if (log is not null && mode != "kernel, no harvests")
            {
                harvester = new Thread(() =>
                {
                    var dirty = new DirtyBitmap(memory.PageCount);
                    while (!stop.Token.WaitHandle.WaitOne(HarvestInterval))
                    {
                        harvestedPages += log.GetAndClear(dirty);
                        harvests++;
                    }
                }) { IsBackground = true, Name = "harvester" };
                harvester.Start();
            }
            ulong opsBefore = state.Ops;
            long t0 = Stopwatch.GetTimestamp();
            long deadline = t0 + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            while (Stopwatch.GetTimestamp() < deadline)
            {
                program.Step(ref state, memory, 512);
            }
            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            stop.Cancel();
            harvester?.Join();
            return ((state.Ops - opsBefore) / seconds, harvests / seconds, harvests == 0 ? 0 : harvestedPages / (double)harvests);
        }
        finally
        {
            log?.Dispose();
        }
    }
}
