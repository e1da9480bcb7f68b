using System.Globalization;
using System.Text;
using Ferry.Core.Units;

namespace Ferry.Core.Workloads;

public enum AccessPattern { Uniform, Sequential, HotCold, Zipf }

public enum PageContent { Zero, Text, Random, Mix }

/// <summary>
/// What a guest program does, as typed on the command line:
/// <c>idle</c> or <c>memtouch:rate=20000,wss=256MiB,pattern=zipf,theta=0.99,content=mix,bytes=8,seed=7</c>.
/// Its canonical text travels with the VM so the destination rebuilds the same program.
/// </summary>
public sealed record WorkloadSpec
{
    public const long DefaultWorkingSet = 256L << 20;
    public const double DefaultHotFraction = 0.1;
    public const double DefaultHotProbability = 0.9;
    public const double DefaultTheta = 0.99;

    public string Program { get; init; } = "idle";

    /// <summary>Page writes per second per VM; 0 = as fast as it can.</summary>
    public long Rate { get; init; }

    public long WorkingSetBytes { get; init; } = DefaultWorkingSet;

    public AccessPattern Pattern { get; init; } = AccessPattern.Uniform;

    /// <summary>Hot-cold: share of the working set that is hot.</summary>
    public double HotFraction { get; init; } = DefaultHotFraction;

    /// <summary>Hot-cold: probability that a write goes to the hot set.</summary>
    public double HotProbability { get; init; } = DefaultHotProbability;

    /// <summary>Zipf exponent.</summary>
    public double Theta { get; init; } = DefaultTheta;

    public PageContent Content { get; init; } = PageContent.Mix;

    /// <summary>Bytes changed per page write (the usual dirtying benchmarks change 8).</summary>
    public int BytesPerWrite { get; init; } = 8;

    public ulong Seed { get; init; } = 1;

    public static WorkloadSpec Idle { get; } = new();

    public static bool TryParse(string text, out WorkloadSpec spec, out string error)
    {
        spec = Idle;
        error = "";
        string t = text.Trim();
        int colon = t.IndexOf(':');
        string name = (colon < 0 ? t : t[..colon]).Trim().ToLowerInvariant();
        if (name == "idle")
        {
            if (colon >= 0 && t[(colon + 1)..].Trim().Length > 0)
            {
                error = "workload 'idle' takes no parameters";
                return false;
            }
            return true;
        }
        if (name != "memtouch")
        {
            error = $"unknown workload '{name}' (known: idle, memtouch)";
            return false;
        }
        var s = new WorkloadSpec { Program = "memtouch" };
        string rest = colon < 0 ? "" : t[(colon + 1)..];
        foreach (string part in rest.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0)
            {
                error = $"memtouch parameter '{part}' is not key=value";
                return false;
            }
            string key = part[..eq].Trim().ToLowerInvariant();
            string value = part[(eq + 1)..].Trim();
            bool ok = true;
            string why = "";
            switch (key)
            {
                case "rate":
                    ok = long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long rate) && rate >= 0;
                    if (ok) { s = s with { Rate = rate }; }
                    why = "rate must be a whole number of page writes per second (0 = unthrottled)";
                    break;
                case "wss":
                    ok = UnitParser.TryParseBytes(value, out long wss, out why) && wss >= 4096;
                    if (ok) { s = s with { WorkingSetBytes = wss }; }
                    else if (why.Length == 0) { why = "wss must be at least one page (4096)"; }
                    break;
                case "pattern":
                    AccessPattern? p = value.ToLowerInvariant() switch
                    {
                        "uniform" => AccessPattern.Uniform,
                        "sequential" => AccessPattern.Sequential,
                        "hot-cold" or "hotcold" => AccessPattern.HotCold,
                        "zipf" => AccessPattern.Zipf,
                        _ => null,
                    };
                    ok = p is not null;
                    if (ok) { s = s with { Pattern = p!.Value }; }
                    why = "pattern must be uniform, sequential, hot-cold or zipf";
                    break;
                case "hot":
                    ok = TryFraction(value, out double hf) && hf > 0;
                    if (ok) { s = s with { HotFraction = hf }; }
                    why = "hot must be a fraction in (0, 1]";
                    break;
                case "hotprob":
                    ok = TryFraction(value, out double hp);
                    if (ok) { s = s with { HotProbability = hp }; }
                    why = "hotprob must be a probability in [0, 1]";
                    break;
                case "theta":
                    ok = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double th) && th > 0 && th < 10;
                    if (ok) { s = s with { Theta = th }; }
                    why = "theta must be a number in (0, 10)";
                    break;
                case "content":
                    PageContent? c = value.ToLowerInvariant() switch
                    {
                        "zero" => PageContent.Zero,
                        "text" => PageContent.Text,
                        "random" => PageContent.Random,
                        "mix" => PageContent.Mix,
                        _ => null,
                    };
                    ok = c is not null;
                    if (ok) { s = s with { Content = c!.Value }; }
                    why = "content must be zero, text, random or mix";
                    break;
                case "bytes":
                    ok = int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int b) && b >= 1 && b <= 4096;
                    if (ok) { s = s with { BytesPerWrite = b }; }
                    why = "bytes must be between 1 and 4096";
                    break;
                case "seed":
                    ok = ulong.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong seed);
                    if (ok) { s = s with { Seed = seed }; }
                    why = "seed must be a non-negative whole number";
                    break;
                default:
                    error = $"unknown memtouch parameter '{key}' (known: rate, wss, pattern, hot, hotprob, theta, content, bytes, seed)";
                    return false;
            }
            if (!ok)
            {
                error = $"bad memtouch parameter '{part}': {why}";
                return false;
            }
        }
        spec = s;
        return true;
    }

    public static WorkloadSpec Parse(string text) =>
        TryParse(text, out var s, out string e) ? s : throw new FormatException(e);

    private static string FormatSize(long bytes) =>
        bytes % (1L << 30) == 0 ? $"{bytes >> 30}GiB"
        : bytes % (1L << 20) == 0 ? $"{bytes >> 20}MiB"
        : bytes % (1L << 10) == 0 ? $"{bytes >> 10}KiB"
        : bytes.ToString(CultureInfo.InvariantCulture);

    private static bool TryFraction(string v, out double x) =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out x) && x >= 0 && x <= 1;

    /// <summary>Canonical text; <see cref="Parse"/> of it gives an equal spec.</summary>
    public override string ToString()
    {
        if (Program == "idle")
        {
            return "idle";
        }
        var sb = new StringBuilder("memtouch:");
        var inv = CultureInfo.InvariantCulture;
        sb.Append(inv, $"rate={Rate},wss={FormatSize(WorkingSetBytes)},pattern=");
        sb.Append(Pattern switch
        {
            AccessPattern.Uniform => "uniform",
            AccessPattern.Sequential => "sequential",
            AccessPattern.HotCold => "hot-cold",
            _ => "zipf",
        });
        // A pattern's own parameters are always written; another pattern's only when they differ
        // from the defaults, so that Parse(ToString()) equals the spec whatever was set.
        if (Pattern == AccessPattern.HotCold || HotFraction != DefaultHotFraction || HotProbability != DefaultHotProbability)
        {
            sb.Append(inv, $",hot={HotFraction:R},hotprob={HotProbability:R}");
        }
        if (Pattern == AccessPattern.Zipf || Theta != DefaultTheta)
        {
            sb.Append(inv, $",theta={Theta:R}");
        }
        sb.Append(",content=").Append(Content.ToString().ToLowerInvariant());
        sb.Append(inv, $",bytes={BytesPerWrite},seed={Seed}");
        return sb.ToString();
    }
}
