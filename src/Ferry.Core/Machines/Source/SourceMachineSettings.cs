using Ferry.Core.Migration;

namespace Ferry.Core.Machines.Source;

/// <summary>What the source machine is told once, at its start: the options and the facts of this VM and driver.</summary>
public sealed record SourceMachineSettings
{
    public required MigrationOptions Options { get; init; }

    /// <summary>Guest RAM in pages.</summary>
    public required long GuestPages { get; init; }

    /// <summary>Bytes of the largest page frame the driver builds (a full batch with its header): the bandwidth limit's smallest burst.</summary>
    public required int MaxBatchFrameBytes { get; init; }

    /// <summary>Bytes of a full post-copy push frame (<see cref="PostCopyScheduler.PushBatchPages"/> pages): the automatic pacing's burst.</summary>
    public required int PushFrameBytes { get; init; }

    /// <summary>The driver can open a new connection to the destination after a post-copy link break (otherwise a break is final).</summary>
    public bool CanReconnect { get; init; }

    /// <summary>The driver can read how much the link delivered (TCP's acknowledged bytes), so post-copy may pace itself.</summary>
    public bool CanMeasureLink { get; init; }

    /// <summary>Page connections the driver can open and will ask for (0: everything on the control connection).</summary>
    public int PageConnections { get; init; }

    /// <summary>
    /// The shortest wait the driver can make. A pacing debt below it is paid by the next wait
    /// instead of being waited out: an engine thread cannot sleep 0.3 ms, and spinning for it
    /// burned a core on a 2-vCPU host (post-copy fault p99 1.0 → 3.3 ms and guest degradation
    /// 2 → 7–17 % until this was added). The simulator, whose clock is exact, uses zero.
    /// </summary>
    public TimeSpan TimerResolution { get; init; }

    /// <summary>How long the destination has to accept the offer.</summary>
    public TimeSpan OfferTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public long RamBytes => GuestPages * Paging.PageSize.Bytes;
}
