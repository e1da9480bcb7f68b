using System.Globalization;
using Ferry.Core.Units;

namespace Ferry.Core.Policy;

/// <summary>
/// Hybrid migration (design.md §4): a fixed number of pre-copy rounds to move the bulk of RAM
/// while the VM runs, then post-copy for whatever is left. The count is fixed on purpose, so a
/// run is predictable and the simulator reproduces it exactly. The timeout still aborts, as in
/// pre-copy: before the switch the source VM is untouched and giving up is safe.
/// </summary>
public sealed class HybridPolicy : IMigrationPolicy
{
    public const int DefaultRounds = 1;

    private readonly int _rounds;
    private readonly TimeSpan? _timeout;

    public HybridPolicy(int rounds, TimeSpan? timeout = null)
    {
        if (rounds < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(rounds), "hybrid needs at least one pre-copy round");
        }
        _rounds = rounds;
        _timeout = timeout;
    }

    public string Name => "hybrid";

    public int Rounds => _rounds;

    public PolicyDecision Decide(in RoundObservation o)
    {
        var inv = CultureInfo.InvariantCulture;
        if (_timeout is { } timeout && o.Elapsed >= timeout)
        {
            return PolicyDecision.Abort(string.Create(inv, $"timeout: {UnitParser.FormatDuration(o.Elapsed)} elapsed ≥ limit {UnitParser.FormatDuration(timeout)}"));
        }
        if (o.Round >= _rounds)
        {
            return PolicyDecision.SwitchToPostCopy(string.Create(inv,
                $"hybrid: {_rounds} pre-copy round{(_rounds == 1 ? "" : "s")} done, {UnitParser.FormatBytes(o.RemainingBytes)} left for post-copy"));
        }
        return PolicyDecision.Continue(string.Create(inv, $"hybrid: round {o.Round} of {_rounds}"));
    }
}
