using System.Text.Json.Serialization;
using Ferry.Core.Policy;

namespace Ferry.Core.Progress;

/// <summary>What the ETA of a progress snapshot is.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<EtaKind>))]
public enum EtaKind
{
    /// <summary>Nothing honest can be said yet (no send rate measured, a paused or finished migration, or a dirty rate that is only bounded).</summary>
    [JsonStringEnumMemberName("unknown")] Unknown,

    /// <summary>The remaining time from the measured rates (the rounds to come as a geometric series, or the copy left at the send rate).</summary>
    [JsonStringEnumMemberName("estimate")] Estimate,

    /// <summary>
    /// Pre-copy is not converging: over the last rounds the pages dirtied per round did not shrink
    /// (dirtying ≥ sending). The migration ends at a bound of the policy (<see cref="MigrationProgress.EtaBound"/>), not by converging.
    /// </summary>
    [JsonStringEnumMemberName("not-converging")] NotConverging,
}

/// <summary>The stop rule that will end the live rounds, other than converging.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<EtaBoundKind>))]
public enum EtaBoundKind
{
    /// <summary><see cref="PreCopyOptions.MaxRounds"/>.</summary>
    [JsonStringEnumMemberName("round-cap")] RoundCap,

    /// <summary><see cref="PreCopyOptions.MaxRamMultiple"/> × RAM put on the wire.</summary>
    [JsonStringEnumMemberName("ram-multiple")] RamMultiple,

    /// <summary><see cref="PreCopyOptions.Timeout"/>.</summary>
    [JsonStringEnumMemberName("timeout")] Timeout,

    /// <summary>Hybrid's fixed pre-copy rounds (<see cref="Migration.MigrationOptions.HybridRounds"/>).</summary>
    [JsonStringEnumMemberName("hybrid-rounds")] HybridRounds,

    /// <summary>Auto switches to post-copy once the dirty rate reaches the bandwidth or the rounds stop shrinking.</summary>
    [JsonStringEnumMemberName("auto-switch")] AutoSwitch,
}

/// <summary>Where a migration's live rounds will stop when it does not converge first, and when (from the measured send rate).</summary>
public sealed record EtaBound
{
    public EtaBoundKind Kind { get; init; }

    /// <summary>The option's value: rounds (round cap, hybrid rounds), the multiple of RAM (RAM multiple), seconds (timeout); auto: its stall rounds.</summary>
    public double Limit { get; init; }

    /// <summary>RAM multiple: the cap in bytes (multiple × RAM); null otherwise.</summary>
    public long? LimitBytes { get; init; }

    /// <summary>What the policy does there: stop and copy, switch to post-copy, or abort (the source VM runs on).</summary>
    public PolicyAction Then { get; init; }

    /// <summary>The live round at whose end the bound is reached.</summary>
    public int AtRound { get; init; }

    /// <summary>Seconds until the bound is reached (the end of that round).</summary>
    public double Seconds { get; init; }
}

/// <summary>What <see cref="MigrationEta.Estimate"/> says about one snapshot.</summary>
/// <param name="Kind">Estimate, not converging, or unknown.</param>
/// <param name="Seconds">Seconds until the migration ends: completed, or (a timeout's abort) failed with the source VM running on. Null when unknown, or when no bound ends a migration that does not converge.</param>
/// <param name="Bound">The policy's bound that ends the live rounds, when it is not convergence.</param>
/// <param name="RoundSeconds">Seconds until the current round's pages are sent at the measured rate.</param>
/// <param name="DirtiedPerSent">Pages dirtied per page sent over the last live rounds (≥ 1: dirtying ≥ sending).</param>
public sealed record EtaResult(EtaKind Kind, double? Seconds, EtaBound? Bound = null, double? RoundSeconds = null, double? DirtiedPerSent = null)
{
    public static readonly EtaResult Unknown = new(EtaKind.Unknown, null);

    public static readonly EtaResult Done = new(EtaKind.Estimate, 0);
}
