using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;

namespace Ferry.Core.Progress;

/// <summary>What the driver sees of the guest and of the round in flight, for a progress snapshot.</summary>
/// <param name="PopulatedPages">Pages the guest has ever written (round 1 sends those).</param>
/// <param name="GuestWritesPerSecond">The guest's recent write rate: before the first harvest it stands in for the dirty rate.</param>
/// <param name="ScanningAll">A round over every populated page is in flight (round 1 or the static copy).</param>
/// <param name="ScannedPages">How far that scan has come.</param>
/// <param name="DirtiedThisRound">Distinct pages the dirty log holds since the last harvest, when the driver can count them cheaply (null: not counted). The ETA's best evidence of the dirty set while a round runs, round 1 above all.</param>
public readonly record struct SourceGuestView(long PopulatedPages, double GuestWritesPerSecond, bool ScanningAll, long ScannedPages, long? DirtiedThisRound = null);

/// <summary>Builds the progress snapshot of a source machine: phase, round, share of RAM covered, rates and an honest ETA.</summary>
public sealed class SourceProgress
{
    private readonly EtaSmoother _eta = new();

    /// <summary>The guest's write rate as last seen (the driver reports it while round 1 runs only; the dirty model needs it after).</summary>
    private double _writesPerSecond;

    /// <param name="pageWireBytes">What one page costs on the wire (its bytes and its entry header).</param>
    public MigrationProgress Snapshot(SourceMigrationMachine m, SourceGuestView view, TimeSpan now, int pageWireBytes)
    {
        if (view.GuestWritesPerSecond > 0)
        {
            _writesPerSecond = view.GuestWritesPerSecond;
        }
        EtaInput input = EtaInputOf(m, view with { GuestWritesPerSecond = _writesPerSecond }, now, pageWireBytes);
        EtaResult eta = MigrationEta.Estimate(input);
        double roundSeconds = input.RoundSeconds;
        double throughput = roundSeconds > 0.05 ? input.RoundWireBytes / roundSeconds : m.LastBandwidth;
        return new MigrationProgress
        {
            Phase = m.Phase,
            Round = m.Round,
            RoundPages = m.RoundPages,
            RoundPagesSent = view.ScanningAll ? view.ScannedPages : m.RoundSent,
            // Never-written pages count as covered: they are zero at both ends and need no bytes.
            RamSentFraction = Math.Min(1.0, (double)(m.Counters.UniqueSent + m.Counters.NeverWrittenSkipped) / m.Settings.GuestPages),
            WireBytes = input.WireBytes,
            DirtyPagesPerSecond = m.LastDirtyRate,
            ThroughputBytesPerSecond = throughput,
            EtaKind = eta.Kind,
            EtaSeconds = _eta.Update(input.ElapsedSeconds, eta.Kind, eta.Seconds),
            EtaBound = eta.Bound,
            RoundEtaSeconds = eta.RoundSeconds,
            DirtiedPerSent = eta.DirtiedPerSent,
            ElapsedSeconds = input.ElapsedSeconds,
            Detail = m.PauseDetail(now),
            AwaitingResume = m.AwaitingResume,
        };
    }

    /// <summary>What the ETA reads of the machine and the driver's view at <paramref name="now"/> (a pure read: nothing changes).</summary>
    public static EtaInput EtaInputOf(SourceMigrationMachine m, SourceGuestView view, TimeSpan now, int pageWireBytes)
    {
        string live = RoundKind.Live.ToWire();
        var rounds = new List<RoundSample>(m.Rounds.Count);
        foreach (RoundRecord r in m.Rounds)
        {
            if (r.Kind == live)
            {
                rounds.Add(new RoundSample(r.PagesSent, r.PagesDirtied, r.WireBytes, r.DurationMs / 1000));
            }
        }
        long wire = m.Counters.WireBytes;
        return new EtaInput
        {
            Phase = m.Phase,
            Options = m.Settings.Options,
            GuestPages = m.Settings.GuestPages,
            RoundKind = m.RoundKind,
            Round = m.Round,
            RoundPages = view.ScanningAll ? view.PopulatedPages : m.RoundPages,
            RoundPagesSent = m.RoundSent,
            RoundWireBytes = wire - m.RoundWireStart,
            RoundSeconds = Math.Max(0, (now - m.RoundStart).TotalSeconds),
            ElapsedSeconds = (now - m.Timeline.Start).TotalSeconds,
            WireBytes = wire,
            LiveRounds = rounds,
            GuestWritesPerSecond = view.GuestWritesPerSecond,
            // Only a scan in flight knows the populated count (0 otherwise: unknown).
            PopulatedPages = view.ScanningAll ? view.PopulatedPages : 0,
            RoundPagesDirtied = view.DirtiedThisRound,
            PostCopyPages = m.Phase == MigrationPhase.PostCopy ? m.PostCopyRemaining : m.PostCopyPending,
            PageWireBytes = pageWireBytes,
        };
    }
}
