using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;

namespace Ferry.Core.Progress;

/// <summary>A finished live round as the ETA sees it (the report's round record, in numbers).</summary>
/// <param name="PagesSent">Pages the round sent.</param>
/// <param name="PagesDirtied">Pages the guest dirtied while it ran: what the next round sends.</param>
/// <param name="WireBytes">Bytes the round put on the link.</param>
/// <param name="Seconds">How long it took (its harvest included).</param>
public readonly record struct RoundSample(long PagesSent, long PagesDirtied, long WireBytes, double Seconds)
{
    /// <summary>Pages dirtied per page sent (the series' ratio q); null for a round that sent nothing.</summary>
    public double? DirtiedPerSent => PagesSent > 0 ? (double)PagesDirtied / PagesSent : null;
}

/// <summary>
/// Everything the ETA reads, in one snapshot: no clock, no machine. <see cref="SourceProgress"/>
/// fills it from the source machine and the driver's view at a time the driver passes in; tests
/// script sequences of it.
/// </summary>
public sealed record EtaInput
{
    public MigrationPhase Phase { get; init; }

    /// <summary>The technique and the policy's stop rules (pre-copy options, hybrid rounds, auto's stall rounds), and the bandwidth limit.</summary>
    public MigrationOptions Options { get; init; } = new();

    public long GuestPages { get; init; }

    public RoundKind RoundKind { get; init; }

    /// <summary>Current round number (1-based; 0 before the first).</summary>
    public int Round { get; init; }

    /// <summary>Pages the current round has to send (round 1 and the static copy: the populated pages).</summary>
    public long RoundPages { get; init; }

    public long RoundPagesSent { get; init; }

    /// <summary>Bytes the current round has put on the link so far.</summary>
    public long RoundWireBytes { get; init; }

    /// <summary>Seconds since the current round began.</summary>
    public double RoundSeconds { get; init; }

    /// <summary>Seconds since the migration began.</summary>
    public double ElapsedSeconds { get; init; }

    /// <summary>Bytes put on the link since the migration began.</summary>
    public long WireBytes { get; init; }

    /// <summary>The finished live rounds, oldest first.</summary>
    public IReadOnlyList<RoundSample> LiveRounds { get; init; } = [];

    /// <summary>The guest's page writes per second (0: unknown): before the first harvest the only trace of its dirty rate (an upper bound on it), after it what the working set is fitted with.</summary>
    public double GuestWritesPerSecond { get; init; }

    /// <summary>Pages the guest has ever written (0 when the driver does not know): no round can dirty more distinct pages.</summary>
    public long PopulatedPages { get; init; }

    /// <summary>Distinct pages dirtied since the current live round began, when the driver counts them (null: not counted).</summary>
    public long? RoundPagesDirtied { get; init; }

    /// <summary>Post-copy: pages still to send (at and after the switchover; 0 when the migration does not end in post-copy).</summary>
    public long PostCopyPages { get; init; }

    /// <summary>What one full page costs on the wire (its bytes and its entry header): turns a bandwidth limit into pages per second.</summary>
    public int PageWireBytes { get; init; } = Paging.PageSize.Bytes;

    public long RamBytes => GuestPages * Paging.PageSize.Bytes;
}
