using System.Globalization;
using System.Runtime.Versioning;
using Ferry.Bench.Tracking;
using Ferry.Core.Units;
using Ferry.Native.Linux;
using Ferry.Vm.Tracking;

[assembly: SupportedOSPlatform("linux")]

// Usage: Ferry.Bench.Tracking [harvest|guest|all] [--sizes 256MiB,1GiB,4GiB] [--wss 4MiB,256MiB] [--repeats 3] [--seconds 2]
string what = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "all";
long[] sizes = Option("--sizes", "256MiB,1GiB,4GiB").Split(',').Select(UnitParser.ParseBytes).ToArray();
long[] workingSets = Option("--wss", "4MiB,256MiB").Split(',').Select(UnitParser.ParseBytes).ToArray();
int repeats = int.Parse(Option("--repeats", "3"), CultureInfo.InvariantCulture);
double seconds = double.Parse(Option("--seconds", "2"), CultureInfo.InvariantCulture);

HostCapabilities caps = HostCapabilities.Current;
Console.WriteLine("```");
Console.Write(caps.Describe());
Console.WriteLine($"auto picks: {DirtyLogFactory.Decide(Ferry.Core.Tracking.DirtyLogChoice.Auto, caps).Reason}");
Console.WriteLine($"{Environment.ProcessorCount} CPUs, .NET {Environment.Version}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Console.WriteLine("```");
if (caps.KernelDirtyLogMissing is { } missing)
{
    Console.Error.WriteLine($"the kernel dirty log is unavailable here ({missing}); nothing to compare");
    return 1;
}
if (what is "harvest" or "all")
{
    Console.WriteLine();
    Console.WriteLine($"### Get-and-clear ({repeats} repeats per cell)");
    Console.WriteLine();
    HarvestBenchmark.Run(sizes, repeats, Console.Out);
}
if (what is "guest" or "all")
{
    Console.WriteLine();
    Console.WriteLine($"### Cost to the guest: memtouch, 1 vCPU, unthrottled, {seconds} s per run, {repeats} runs, harvest every {GuestCostBenchmark.HarvestInterval.TotalMilliseconds} ms");
    Console.WriteLine();
    GuestCostBenchmark.Run(workingSets, TimeSpan.FromSeconds(seconds), repeats, Console.Out);
}
return 0;

string Option(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
