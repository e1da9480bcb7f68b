using Ferry.Core.Migration;

namespace Ferry.Core.Progress;

/// <summary>A snapshot of a running migration, polled by the CLI and the agent API.</summary>
public sealed record MigrationProgress
{
    public MigrationPhase Phase { get; init; } = MigrationPhase.Setup;
    public int Round { get; init; }
    public long RoundPages { get; init; }
    public long RoundPagesSent { get; init; }

    /// <summary>Distinct guest pages sent at least once ÷ guest pages.</summary>
    public double RamSentFraction { get; init; }
    public long WireBytes { get; init; }
    public double DirtyPagesPerSecond { get; init; }
    public double ThroughputBytesPerSecond { get; init; }

    /// <summary>What <see cref="EtaSeconds"/> is: an estimate from the measured rates, the end at a bound of a pre-copy that is not converging, or unknown.</summary>
    public EtaKind EtaKind { get; init; } = EtaKind.Unknown;

    /// <summary>
    /// Seconds until the migration ends (null = unknown): for an estimate, its completion; when not
    /// converging, the end at <see cref="EtaBound"/> (the copy after it included; a timeout's abort
    /// ends it there). Steadied between snapshots, but never held against the estimate.
    /// </summary>
    public double? EtaSeconds { get; init; }

    /// <summary>The policy's bound that will end the live rounds (round cap, RAM multiple, timeout…) and when, when it is not convergence; null otherwise.</summary>
    public EtaBound? EtaBound { get; init; }

    /// <summary>Seconds until the current round's pages are sent at the measured rate (null = unknown).</summary>
    public double? RoundEtaSeconds { get; init; }

    /// <summary>Pages the guest dirtied per page sent over the last live rounds (≥ 1: dirtying ≥ sending); null before the first harvest.</summary>
    public double? DirtiedPerSent { get; init; }

    public double ElapsedSeconds { get; init; }

    /// <summary>What a paused phase is waiting for, in words (null otherwise): e.g. the next reconnection attempt, or a resume request.</summary>
    public string? Detail { get; init; }

    /// <summary>Post-copy paused and the automatic reconnection window is spent: only a resume request (or a cancel) moves it on.</summary>
    public bool AwaitingResume { get; init; }
}
