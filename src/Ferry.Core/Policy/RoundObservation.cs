namespace Ferry.Core.Policy;

/// <summary>What the engine (or the simulator) saw during one completed pre-copy round.</summary>
/// <param name="Round">1-based number of the round just finished.</param>
/// <param name="PagesSent">Pages sent in this round.</param>
/// <param name="WireBytesSent">Bytes put on the link in this round.</param>
/// <param name="PagesDirtied">Pages written during this round: what the next round must send.</param>
/// <param name="Duration">Wall (or virtual) time the round took.</param>
/// <param name="Elapsed">Time since the migration started.</param>
/// <param name="TotalWireBytes">Bytes put on the link since the migration started.</param>
/// <param name="RamBytes">Size of guest RAM.</param>
public readonly record struct RoundObservation(
    int Round,
    long PagesSent,
    long WireBytesSent,
    long PagesDirtied,
    TimeSpan Duration,
    TimeSpan Elapsed,
    long TotalWireBytes,
    long RamBytes)
{
    /// <summary>Measured bandwidth of this round in bytes/s (0 when the round took no time).</summary>
    public double BandwidthBytesPerSecond => Duration > TimeSpan.Zero ? WireBytesSent / Duration.TotalSeconds : 0;

    /// <summary>Pages dirtied per second during this round.</summary>
    public double DirtyPagesPerSecond => Duration > TimeSpan.Zero ? PagesDirtied / Duration.TotalSeconds : 0;

    /// <summary>Bytes still to send if the VM stopped now (raw page bytes).</summary>
    public long RemainingBytes => PagesDirtied * Paging.PageSize.Bytes;
}
