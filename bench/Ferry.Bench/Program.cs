namespace Ferry.Bench;

internal static class Program
{
    private const string Usage = """
        Ferry macro benchmarks (real migrations over loopback TCP, in one process).

        usage: dotnet run -c Release --project bench/Ferry.Bench -- <verb> [options]

        verbs:
          stream        idle VM full of random bytes, pre-copy, no bandwidth limit, against raw .NET TCP
                        over loopback (same byte count, same socket settings), per page-install backend,
                        and against raw TCP into a fresh mapping of the guest's size (plain recv, and
                        recv + UFFDIO_COPY runs), the ceiling of each backend
              --memory SIZE      guest RAM (default 1GiB)
              --page-install L   comma list of auto | uffd | copy (default auto); each repeat migrates
                                 the same VM once per entry, order rotating, raw TCP after each
              --dirty-log D      auto | kernel | software (default auto)
              --repeats N        repeats (default 3); each is printed, then the median per backend
              --no-probe         skip the page copy probe (fresh vs touched memcpy, XxHash3)
              --no-warmup        skip the small untimed warm-up migrations
              --out PATH         JSON results (default bench-results/stream-<timestamp>.json)

          install       destination page install rate without the network: GuestMemory.InstallPage
                        (copy) vs PageInstaller over EnableFastInstall (uffd) into fresh memory, and
                        the copy again into touched memory (ceiling); random page content
              --sizes LIST       default 256MiB,1GiB
              --orders LIST      sequential,random (default both)
              --modes LIST       copy,uffd (default both; touched runs after copy); what-ifs, opt-in:
                                 populate (MADV_POPULATE_WRITE, then copy), thp (MADV_HUGEPAGE, then copy)
              --repeats N        repeats (default 3), fresh GuestMemory each; medians are reported
              --seed N           content and shuffle seed (default 7)
              --no-warmup        skip the untimed 16 MiB warm-up
              --out PATH         JSON results (default bench-results/install-<timestamp>.json)

          convergence   memtouch guest, pre-copy with the default policy at a bandwidth limit
              --memory SIZE      guest RAM (default 512MiB)
              --cases LIST       WSS@RATE,... (default 64MiB@5000,64MiB@20000,64MiB@100000,
                                 256MiB@5000,256MiB@20000,256MiB@100000)
              --max-rounds N     live-round cap (default 10)
              --pattern P        uniform | sequential | hot-cold | zipf (default uniform)
              --content C        zero | text | random | mix (default: memtouch's own, mix)
              --bandwidth RATE   sender limit (default 125MB/s = 125000000 bytes/s)
              --vcpus N          guest vCPUs (default 1)
              --seed N           workload seed (default 7)
              --page-install P   auto | uffd | copy (default auto)
              --dirty-log D      auto | kernel | software (default auto)
              --repeats N        repeats per case (default 3); medians are reported
              --no-warmup        skip the small untimed warm-up migration
              --out PATH         JSON results (default bench-results/convergence-<timestamp>.json)

          postcopy      one guest migrated by each technique at a bandwidth limit: downtime and total
                        time against post-copy faults, fault latency, resume time and degradation
                        (whole / live rounds / resume phase)
              --workload W       memtouch | idle (default memtouch); idle: the working set holds
                                 random bytes written before the guest starts, and nothing runs
              --memory SIZE      guest RAM (default 256MiB)
              --wss SIZE         working set, written at random with random bytes (default 128MiB)
              --rate N           memtouch page writes per second (default 50000)
              --techniques LIST  default precopy,postcopy,hybrid,auto
              --bandwidth RATE   sender limit (default 125MB/s)
              --vcpus N          guest vCPUs (default 2)
              --max-rounds N     pre-copy round cap (default 10)
              --page-install L   comma list of auto | uffd | copy (default auto): the destination's
                                 post-copy fault path, userfaultfd (uffd) or software (copy)
              --repeats N        repeats (default 3); medians are reported
              --no-warmup        skip the small untimed warm-up migrations
              --out PATH         JSON results (default bench-results/postcopy-<timestamp>.json)

          connections   the stream migration over 0, 1, 2, 4 page connections and over TLS, each against
                        raw TCP (1 stream, same bytes) measured right after it, with the process's CPU
                        per GB moved (both ends run in this process)
              --memory SIZE      guest RAM (default 1GiB)
              --connections L    comma list of page-connection counts (default 0,1,2,4)
              --tls L            off,on (default both; TLS runs with 0 and 2 page connections)
              --page-install P   auto | uffd | copy (default auto)
              --repeats N        repeats (default 3), variants rotating; medians are reported
              --no-warmup        skip the small untimed warm-up migrations
              --out PATH         JSON results (default bench-results/connections-<timestamp>.json)

          eta           is the live progress's ETA honest (issue 9)? An idle guest full of data, a memtouch guest
                        that converges and one that does not (round cap), migrated at a bandwidth limit while
                        the source's progress is sampled; the ETA against the real remaining time at 25/50/75 %
                        of each run, and when "not converging" was first shown
              --cases LIST       idle,converging,nonconverging (default all three)
              --memory SIZE      guest RAM (default 512MiB)
              --bandwidth RATE   sender limit (default 30MB/s)
              --max-rounds N     round cap of the non-converging case (default 8)
              --sample-ms N      progress sampling interval, 100 to 200 (default 150)
              --connections N    page connections (default 2, as ferry migrate)
              --repeats N        repeats (default 1); every run is printed
              --no-warmup        skip the small untimed warm-up migration
              --out PATH         JSON results with every sample (default bench-results/eta-<timestamp>.json)

        Tiered compilation is off (runtimeconfig); DOTNET_TieredCompilation overrides it and is reported.
        """;

    public static int Main(string[] argv)
    {
        try
        {
            BenchArgs args = BenchArgs.Parse(argv);
            switch (args.Verb)
            {
                case "stream":
                    return StreamBenchmark.Execute(args);
                case "convergence":
                    return ConvergenceBenchmark.Execute(args);
                case "install":
                    return InstallBenchmark.Execute(args);
                case "postcopy":
                    return PostCopyBenchmark.Execute(args);
                case "connections":
                    return ConnectionsBenchmark.Execute(args);
                case "eta":
                    return EtaBenchmark.Execute(args);
                case "help" or "--help" or "-h":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    throw new BenchUsageException($"unknown verb '{args.Verb}'");
            }
        }
        catch (BenchUsageException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            Console.Error.WriteLine();
            Console.Error.WriteLine(Usage);
            return 2;
        }
    }
}
