using Ferry.Core.Policy;
using Ferry.Core.Reporting;

namespace Ferry.Core.Machines.Source;

/// <summary>The round in progress and the record of every finished one, as the report's per-round table shows them.</summary>
internal sealed class RoundLog
{
    private readonly List<RoundRecord> _records = [];

    public int Round { get; private set; }
    public RoundKind Kind { get; private set; }

    /// <summary>Pages the current round has to send (round 1: every guest page; it skips the never-written ones as it goes).</summary>
    public long RoundPages { get; private set; }

    /// <summary>Pages sent so far in the current round.</summary>
    public long RoundSent { get; set; }
    public TimeSpan RoundStart { get; private set; }
    public long RoundWireStart { get; private set; }

    /// <summary>The last live round's dirty rate (pages/s), bandwidth (bytes/s) and shrink (pages dirtied per page sent; null before the first harvest).</summary>
    public double LastDirtyRate { get; private set; }
    public double LastBandwidth { get; private set; }
    public double? LastShrink { get; private set; }

    public IReadOnlyList<RoundRecord> Records => _records;

    /// <summary>Live rounds recorded so far (the pre-copy rounds before a post-copy switch).</summary>
    public int Count => _records.Count;

    public void Begin(int round, long pages, RoundKind kind, TimeSpan now, long wireTotal)
    {
        Round = round;
        RoundPages = pages;
        RoundSent = 0;
        RoundStart = now;
        RoundWireStart = wireTotal;
        Kind = kind;
    }

    /// <summary>What the policy sees of the live round that just ended.</summary>
    public RoundObservation Observe(long dirtied, TimeSpan now, TimeSpan elapsed, long wireTotal, long ramBytes) => new(
        Round: Round,
        PagesSent: RoundSent,
        WireBytesSent: wireTotal - RoundWireStart,
        PagesDirtied: dirtied,
        Duration: now - RoundStart,
        Elapsed: elapsed,
        TotalWireBytes: wireTotal,
        RamBytes: ramBytes);

    /// <summary>Records a live round exactly as the policy saw it.</summary>
    public void RecordLive(in RoundObservation o, PolicyDecision decision)
    {
        LastDirtyRate = o.DirtyPagesPerSecond;
        LastShrink = o.PagesSent > 0 ? (double)o.PagesDirtied / o.PagesSent : null;
        LastBandwidth = o.BandwidthBytesPerSecond;
        _records.Add(new RoundRecord
        {
            Round = o.Round,
            Kind = RoundKind.Live.ToWire(),
            PagesSent = o.PagesSent,
            PagesDirtied = o.PagesDirtied,
            WireBytes = o.WireBytesSent,
            DurationMs = o.Duration.TotalMilliseconds,
            BandwidthBytesPerSecond = o.BandwidthBytesPerSecond,
            DirtyPagesPerSecond = o.DirtyPagesPerSecond,
            Decision = decision.Action.ToString(),
            Reason = decision.Reason,
        });
    }

    /// <summary>Records the current round as a paused one (stop-and-copy or post-copy), ending now.</summary>
    public void RecordPaused(string decision, string reason, TimeSpan now, long wireTotal)
    {
        double seconds = (now - RoundStart).TotalSeconds;
        long wire = wireTotal - RoundWireStart;
        _records.Add(new RoundRecord
        {
            Round = Round,
            Kind = Kind.ToWire(),
            PagesSent = RoundSent,
            PagesDirtied = 0,
            WireBytes = wire,
            DurationMs = seconds * 1000,
            BandwidthBytesPerSecond = seconds > 0 ? wire / seconds : 0,
            DirtyPagesPerSecond = 0,
            Decision = decision,
            Reason = reason,
        });
    }
}
