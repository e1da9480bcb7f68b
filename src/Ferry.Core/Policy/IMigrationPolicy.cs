namespace Ferry.Core.Policy;

/// <summary>
/// Decides after each round from what was observed. Implementations are plain code over
/// observations (no clock, no I/O) so the simulator runs them exactly as the engine does.
/// </summary>
public interface IMigrationPolicy
{
    /// <summary>Short name for reports, e.g. "precopy".</summary>
    string Name { get; }

    PolicyDecision Decide(in RoundObservation observation);
}
