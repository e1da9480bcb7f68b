using System.Globalization;
using Ferry.Core.Units;

namespace Ferry.Core.Policy;

/// <summary>
/// Pre-copy while it converges, post-copy as soon as it will not (design.md §4, issue "auto").
/// The pre-copy stop conditions that mean "converged" (remaining bytes fit the downtime budget,
/// few dirty pages) end in stop-and-copy; the ones that mean "this will not converge" switch to
/// post-copy instead of giving up:
/// <list type="bullet">
/// <item>the time budget (<see cref="PreCopyOptions.Timeout"/>) is spent;</item>
/// <item>the guest dirties pages at least as fast as the link sends them;</item>
/// <item>the remaining bytes did not shrink for <see cref="StallRounds"/> rounds in a row (a round
/// counts as shrinking only below <see cref="ShrinkFactor"/> of the last one, so the noise of a
/// working set rewritten every round does not keep resetting the count);</item>
/// <item>the round cap or the RAM multiple is reached.</item>
/// </list>
/// Stateful (it remembers the last round's remaining bytes): one instance per migration.
/// </summary>
public sealed class AutoPolicy : IMigrationPolicy
{
    public const int DefaultStallRounds = 2;

    /// <summary>A round shrank only if what is left is below this fraction of what was left after the previous one.</summary>
    public const double ShrinkFactor = 0.95;

    private readonly PreCopyOptions _options;
    private readonly int _stallRounds;
    private long _previousRemaining = -1;
    private int _stalled;

    public AutoPolicy(PreCopyOptions options, int stallRounds = DefaultStallRounds)
    {
        options.Validate();
        if (stallRounds < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(stallRounds), "stall rounds must be at least 1");
        }
        _options = options;
        _stallRounds = stallRounds;
    }

    public string Name => "auto";

    public int StallRounds => _stallRounds;

    public PolicyDecision Decide(in RoundObservation o)
    {
        var inv = CultureInfo.InvariantCulture;
        // Track shrinkage before any early return, so the count always covers consecutive rounds.
        bool shrank = _previousRemaining < 0 || o.RemainingBytes < ShrinkFactor * _previousRemaining;
        _stalled = shrank ? 0 : _stalled + 1;
        _previousRemaining = o.RemainingBytes;

        if (_options.DowntimeLimit is { } limit && o.RemainingBytes <= o.BandwidthBytesPerSecond * limit.TotalSeconds)
        {
            return PolicyDecision.StopAndCopy(string.Create(inv,
                $"converged: {UnitParser.FormatBytes(o.RemainingBytes)} left ≤ {UnitParser.FormatRate(o.BandwidthBytesPerSecond)} × {limit.TotalMilliseconds:0} ms"));
        }
        if (_options.DirtyPageThreshold is { } threshold && o.PagesDirtied < threshold)
        {
            return PolicyDecision.StopAndCopy(string.Create(inv, $"dirty pages {o.PagesDirtied} < threshold {threshold}"));
        }
        if (_options.Timeout is { } budget && o.Elapsed >= budget)
        {
            return PolicyDecision.SwitchToPostCopy(string.Create(inv,
                $"time budget spent: {UnitParser.FormatDuration(o.Elapsed)} ≥ {UnitParser.FormatDuration(budget)}"));
        }
        double dirtyBytesPerSecond = o.DirtyPagesPerSecond * Paging.PageSize.Bytes;
        if (o.BandwidthBytesPerSecond > 0 && dirtyBytesPerSecond >= o.BandwidthBytesPerSecond)
        {
            return PolicyDecision.SwitchToPostCopy(string.Create(inv,
                $"dirty rate {UnitParser.FormatRate(dirtyBytesPerSecond)} ≥ bandwidth {UnitParser.FormatRate(o.BandwidthBytesPerSecond)}"));
        }
        if (_stalled >= _stallRounds)
        {
            return PolicyDecision.SwitchToPostCopy(string.Create(inv,
                $"remaining bytes did not shrink for {_stalled} rounds ({UnitParser.FormatBytes(o.RemainingBytes)} left)"));
        }
        if (_options.MaxRounds is { } cap && o.Round >= cap)
        {
            return PolicyDecision.SwitchToPostCopy(string.Create(inv, $"round cap {cap} reached without converging"));
        }
        if (_options.MaxRamMultiple is { } k && o.TotalWireBytes >= k * o.RamBytes)
        {
            return PolicyDecision.SwitchToPostCopy(string.Create(inv,
                $"sent {UnitParser.FormatBytes(o.TotalWireBytes)} ≥ {k:0.##} × RAM without converging"));
        }
        return PolicyDecision.Continue(string.Create(inv, $"{o.PagesDirtied} pages dirtied; converging"));
    }
}
