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

    /// <summary>Estimated seconds to completion; never increases between snapshots (null = unknown).</summary>
    public double? EtaSeconds { get; init; }
    public double ElapsedSeconds { get; init; }

    /// <summary>What a paused phase is waiting for, in words (null otherwise): e.g. the next reconnection attempt, or a resume request.</summary>
    public string? Detail { get; init; }

    /// <summary>Post-copy paused and the automatic reconnection window is spent: only a resume request (or a cancel) moves it on.</summary>
    public bool AwaitingResume { get; init; }
}
