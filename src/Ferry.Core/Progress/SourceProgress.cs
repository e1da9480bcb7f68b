using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;

namespace Ferry.Core.Progress;

/// <summary>What the driver sees of the guest and of the round in flight, for a progress snapshot.</summary>
/// <param name="PopulatedPages">Pages the guest has ever written (round 1 sends those).</param>
/// <param name="GuestWritesPerSecond">The guest's recent write rate: before the first harvest it stands in for the dirty rate.</param>
/// <param name="ScanningAll">A round over every populated page is in flight (round 1 or the static copy).</param>
/// <param name="ScannedPages">How far that scan has come.</param>
public readonly record struct SourceGuestView(long PopulatedPages, double GuestWritesPerSecond, bool ScanningAll, long ScannedPages);

/// <summary>Builds the progress snapshot of a source machine: phase, round, share of RAM covered, rates and an ETA that never rises.</summary>
public sealed class SourceProgress
{
    private readonly MonotonicEta _eta = new();

    /// <param name="pageWireBytes">What one page costs on the wire (its bytes and its entry header).</param>
    public MigrationProgress Snapshot(SourceMigrationMachine m, SourceGuestView view, TimeSpan now, int pageWireBytes)
    {
        double elapsed = (now - m.Timeline.Start).TotalSeconds;
        double roundSeconds = (now - m.RoundStart).TotalSeconds;
        long wire = m.Counters.WireBytes;
        double throughput = roundSeconds > 0.05 ? (wire - m.RoundWireStart) / roundSeconds : m.LastBandwidth;
        double? raw = null;
        if (throughput > 0)
        {
            double pageRate = throughput / pageWireBytes;
            // Before the first harvest the guest's write rate over the send rate stands in for q (an upper bound).
            double shrink = m.LastShrink ?? Math.Max(0, view.GuestWritesPerSecond) / pageRate;
            long total = view.ScanningAll ? view.PopulatedPages : m.RoundPages;
            long left = Math.Max(0, total - m.RoundSent);
            raw = m.RoundKind != RoundKind.Live
                ? left / pageRate
                : PreCopyEta.Estimate(m.Settings.Options.PreCopy, m.Round, total, left, pageRate, shrink, wire, m.Settings.RamBytes, elapsed);
        }
        return new MigrationProgress
        {
            Phase = m.Phase,
            Round = m.Round,
            RoundPages = m.RoundPages,
            RoundPagesSent = view.ScanningAll ? view.ScannedPages : m.RoundSent,
            // Never-written pages count as covered: they are zero at both ends and need no bytes.
            RamSentFraction = Math.Min(1.0, (double)(m.Counters.UniqueSent + m.Counters.NeverWrittenSkipped) / m.Settings.GuestPages),
            WireBytes = wire,
            DirtyPagesPerSecond = m.LastDirtyRate,
            ThroughputBytesPerSecond = throughput,
            EtaSeconds = m.Phase == MigrationPhase.Completed ? 0 : _eta.Update(elapsed, raw),
            ElapsedSeconds = elapsed,
            Detail = m.PauseDetail(now),
            AwaitingResume = m.AwaitingResume,
        };
    }
}
