using System.Globalization;
using System.Runtime.InteropServices;

namespace Ferry.Bench;

/// <summary>What the numbers were measured on, recorded with every result file.</summary>
internal sealed record BenchEnvironment
{
    /// <summary>Printed beside every figure that the machine's memory-management path shapes.</summary>
    public const string MachineCaveat =
        "Machine caveat: this host is a PVM guest with shadow paging (see shared/kernel.md). The first touch " +
        "of never-used memory costs ~15-30 us per 4 KiB page (bare metal / KVM+EPT: ~0.5-2 us), and freed " +
        "memory goes back to the host, so 'fresh memory' figures vary by up to 10x between repeats. " +
        "2 vCPUs shared with other engineers' builds: expect noise; medians are reported.";

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
