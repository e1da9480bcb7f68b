using System.Globalization;
using System.Runtime.InteropServices;

namespace Ferry.Bench;

/// <summary>What the numbers were measured on, recorded with every result file.</summary>
internal sealed record BenchEnvironment
{
    /// <summary>Printed beside every figure that the machine's memory-management path shapes.</summary>
    public const string MachineCaveat =
        "Machine caveat: this host is a KVM guest (Firecracker, 2 vCPUs, free page reporting on), not the PVM kind " +
        "shared/kernel.md describes. The first touch of a fresh 4 KiB page measured ~2 us in most passes here and up to " +
        "~9 us in some (bench/README.md; the slow passes were not pinned to a cause), so 'fresh memory' figures swing by " +
        "up to ~4x between passes. The vCPUs are shared with other engineers' builds: expect noise; medians are reported " +
        "and the load average recorded.";

    public string Host { get; init; } = "";
    public string Os { get; init; } = "";
    public string Runtime { get; init; } = "";
    public int ProcessorCount { get; init; }
    public string TieredCompilation { get; init; } = "";
    public bool ServerGc { get; init; }
    public string LoadAverageAtStart { get; init; } = "";
    public string Caveat { get; init; } = MachineCaveat;

    public static BenchEnvironment Capture() => new()
    {
        Host = System.Environment.MachineName,
        Os = RuntimeInformation.OSDescription,
        Runtime = RuntimeInformation.FrameworkDescription,
        ProcessorCount = System.Environment.ProcessorCount,
        TieredCompilation = TieredCompilationSetting(),
        ServerGc = System.Runtime.GCSettings.IsServerGC,
        LoadAverageAtStart = LoadAverage(),
    };

    /// <summary>The tiering setting in force: the environment variable wins over runtimeconfig.json.</summary>
    public static string TieredCompilationSetting()
    {
        string? env = System.Environment.GetEnvironmentVariable("DOTNET_TieredCompilation");
        if (env is not null)
        {
            return env == "0" ? "off (DOTNET_TieredCompilation=0)" : $"on (DOTNET_TieredCompilation={env})";
        }
        object? config = AppContext.GetData("System.Runtime.TieredCompilation");
        return config switch
        {
            bool b => b ? "on (runtimeconfig)" : "off (runtimeconfig: <TieredCompilation>false</TieredCompilation>)",
            string s when bool.TryParse(s, out bool b) => b ? "on (runtimeconfig)" : "off (runtimeconfig: <TieredCompilation>false</TieredCompilation>)",
            _ => "on (runtime default)",
        };
    }

    /// <summary>1/5/15-minute load averages: a rough noise indicator on a shared 2-core box.</summary>
    public static string LoadAverage()
    {
        try
        {
            string[] parts = File.ReadAllText("/proc/loadavg").Split(' ');
            return parts.Length >= 3 ? string.Join(' ', parts[..3]) : "";
        }
        catch (IOException)
        {
            return "";
        }
        catch (UnauthorizedAccessException)
        {
            return "";
        }
    }

    public static string Stamp() => DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
}
