using System.Globalization;
using Ferry.Core.Units;

namespace Ferry.Core.Policy;

/// <summary>
/// Iterative pre-copy (design.md §4): keep sending what the last round dirtied until one stop
/// condition holds. The timeout is checked first, because it aborts rather than stops.
/// </summary>
public sealed class PreCopyPolicy : IMigrationPolicy
{
    private readonly PreCopyOptions _options;

    public PreCopyPolicy(PreCopyOptions options)
    {
        options.Validate();
        _options = options;
    }

    public string Name => "precopy";

    public PreCopyOptions Options => _options;

    public PolicyDecision Decide(in RoundObservation o)
    {
        var inv = CultureInfo.InvariantCulture;
        if (_options.Timeout is { } timeout && o.Elapsed >= timeout)
        {
            return PolicyDecision.Abort(string.Create(inv, $"timeout: {UnitParser.FormatDuration(o.Elapsed)} elapsed ≥ limit {UnitParser.FormatDuration(timeout)}"));
        }
        if (_options.DowntimeLimit is { } limit)
        {
            double budget = o.BandwidthBytesPerSecond * limit.TotalSeconds;
            if (o.RemainingBytes <= budget)
            {
                return PolicyDecision.StopAndCopy(string.Create(inv,
                    $"converged: {UnitParser.FormatBytes(o.RemainingBytes)} left ≤ {UnitParser.FormatRate(o.BandwidthBytesPerSecond)} × {limit.TotalMilliseconds:0} ms"));
            }
        }
        if (_options.DirtyPageThreshold is { } threshold && o.PagesDirtied < threshold)
        {
            return PolicyDecision.StopAndCopy(string.Create(inv, $"dirty pages {o.PagesDirtied} < threshold {threshold}"));
        }
        if (_options.MaxRounds is { } cap && o.Round >= cap)
        {
            return PolicyDecision.StopAndCopy(string.Create(inv, $"round cap {cap} reached"));
        }
        if (_options.MaxRamMultiple is { } k && o.TotalWireBytes >= k * o.RamBytes)
        {
            return PolicyDecision.StopAndCopy(string.Create(inv,
                $"sent {UnitParser.FormatBytes(o.TotalWireBytes)} ≥ {k:0.##} × RAM"));
        }
        return PolicyDecision.Continue(string.Create(inv, $"{o.PagesDirtied} pages dirtied; not converged"));
    }
}
