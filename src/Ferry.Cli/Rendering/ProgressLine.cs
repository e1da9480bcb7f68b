using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Progress;
using Ferry.Core.Units;

namespace Ferry.Cli.Rendering;

/// <summary>One-line text of a progress snapshot, shared by the live display and plain output.</summary>
internal static class ProgressLine
{
    public static string Describe(MigrationProgress p)
    {
        var inv = CultureInfo.InvariantCulture;
        if (p.Detail is { } detail)
        {
            // Paused: rates and an ETA mean nothing while the link is down; say what it waits for instead.
            return string.Create(inv, $"{p.Phase.ToWire(),-13} RAM sent {p.RamSentFraction * 100,5:0.0}%  {detail}");
        }
        string eta = p.EtaSeconds is { } e ? (e < 0.05 && p.Phase != MigrationPhase.Completed ? "finishing" : string.Create(inv, $"{e:0.0} s")) : "…";
        return string.Create(inv,
            $"{p.Phase.ToWire(),-13} round {p.Round,2}  RAM sent {p.RamSentFraction * 100,5:0.0}%  round {p.RoundPagesSent}/{p.RoundPages} pages  " +
            $"dirty {p.DirtyPagesPerSecond,8:N0} pages/s  {UnitParser.FormatRate(p.ThroughputBytesPerSecond),11}  ETA {eta}");
    }
}
