using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Progress;
using Ferry.Core.Units;

namespace Ferry.Cli.Rendering;

/// <summary>One-line text of a progress snapshot, shared by the live display and plain output.</summary>
internal static class ProgressLine
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Describe(MigrationProgress p)
    {
        if (p.Detail is { } detail)
        {
            // Paused: rates and an ETA mean nothing while the link is down; say what it waits for instead.
            return string.Create(Inv, $"{p.Phase.ToWire(),-13} RAM sent {p.RamSentFraction * 100,5:0.0}%  {detail}");
        }
        return string.Create(Inv,
            $"{p.Phase.ToWire(),-13} round {p.Round,2}  RAM sent {p.RamSentFraction * 100,5:0.0}%  round {p.RoundPagesSent}/{p.RoundPages} pages  " +
            $"dirty {p.DirtyPagesPerSecond,8:N0} pages/s  {UnitParser.FormatRate(p.ThroughputBytesPerSecond),11}  {Eta(p)}");
    }

    /// <summary>The ETA part: an estimate, a pre-copy that is not converging and the bound it will stop at, or unknown.</summary>
    public static string Eta(MigrationProgress p)
    {
        switch (p.EtaKind)
        {
            case EtaKind.NotConverging:
            {
                string ratio = p.DirtiedPerSent is { } q ? string.Create(Inv, $" ({q:0.00} pages dirtied per page sent)") : "";
                if (p.EtaBound is not { } b)
                {
                    return $"not converging: dirtying ≥ sending{ratio}; no bound is set: it runs until cancelled";
                }
                string end = p.EtaSeconds is { } e ? $", {(b.Then == PolicyAction.Abort ? "fails" : "ETA")} {Time(e)}" : "";
                return $"not converging: dirtying ≥ sending{ratio}; stops at {Bound(b)} in {Time(b.Seconds)}, then {Then(b.Then)}{end}";
            }
            case EtaKind.Estimate when p.EtaSeconds is { } e:
            {
                string eta = e < 0.05 && p.Phase != MigrationPhase.Completed ? "finishing" : Time(e);
                string bound = p.EtaBound is { } b ? $" (stops at {Bound(b)}, then {Then(b.Then)})" : "";
                return $"ETA {eta}{bound}";
            }
            default:
                return p.RoundEtaSeconds is { } r ? $"ETA … (this round: {Time(r)} left)" : "ETA …";
        }
    }

    private static string Bound(EtaBound b) => b.Kind switch
    {
        EtaBoundKind.RoundCap => string.Create(Inv, $"the round cap ({b.Limit:0} rounds)"),
        EtaBoundKind.RamMultiple => string.Create(Inv, $"{b.Limit:0.##} × RAM sent ({UnitParser.FormatBytes(b.LimitBytes ?? 0)})"),
        EtaBoundKind.Timeout => $"the timeout ({Time(b.Limit)})",
        EtaBoundKind.HybridRounds => string.Create(Inv, $"hybrid's {b.Limit:0} pre-copy round{(b.Limit == 1 ? "" : "s")}"),
        _ => "auto's switch",
    };

    private static string Then(PolicyAction a) => a switch
    {
        PolicyAction.StopAndCopy => "stop-and-copy",
        PolicyAction.SwitchToPostCopy => "post-copy",
        PolicyAction.Abort => "abort (the VM stays here)",
        _ => "another round",
    };

    /// <summary>12.3 s, 4m05s, 1h02m.</summary>
    public static string Time(double seconds)
    {
        if (!double.IsFinite(seconds))
        {
            return "∞";
        }
        seconds = Math.Max(0, seconds);
        if (seconds < 60)
        {
            return string.Create(Inv, $"{seconds:0.0} s");
        }
        long s = (long)Math.Round(seconds);
        return s < 3600 ? string.Create(Inv, $"{s / 60}m{s % 60:00}s") : string.Create(Inv, $"{s / 3600}h{s % 3600 / 60:00}m");
    }
}
