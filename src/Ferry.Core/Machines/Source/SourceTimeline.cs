namespace Ferry.Core.Machines.Source;

/// <summary>When each milestone of the source's migration happened, on the machine's clock (null: not reached).</summary>
public sealed class SourceTimeline
{
    public TimeSpan Start { get; init; }

    /// <summary>The VM paused at the source: preparation ends, downtime begins.</summary>
    public TimeSpan? PausedAt { get; internal set; }

    /// <summary>The last page of the paused copy was written (post-copy: the pending map is next).</summary>
    public TimeSpan? FinalPagesDone { get; internal set; }

    /// <summary>vCPU and device state (and the pending map) written.</summary>
    public TimeSpan? StateDone { get; internal set; }

    /// <summary>The destination said the VM runs there: downtime ends.</summary>
    public TimeSpan? ResumedAt { get; internal set; }

    /// <summary>Post-copy: the last pending page was written.</summary>
    public TimeSpan? LastPageSentAt { get; internal set; }

    /// <summary>Post-copy: the destination confirmed every page: nothing depends on the source any more.</summary>
    public TimeSpan? CompletedAt { get; internal set; }
}

/// <summary>Pages and bytes the source has put on the link.</summary>
public sealed class SourceCounters
{
    public long PagesSent { get; internal set; }

    /// <summary>Distinct pages sent at least once.</summary>
    public long UniqueSent { get; internal set; }
    public long ZeroSent { get; internal set; }

    /// <summary>Never-written pages skipped (zero at both ends): round 1, the static copy, or pure post-copy's pending map.</summary>
    public long NeverWrittenSkipped { get; internal set; }

    /// <summary>Every frame's bytes, header included, on every connection.</summary>
    public long WireBytes { get; internal set; }
}
