using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;

namespace Ferry.Core.Progress;

/// <summary>How fast pages go out, as measured (or, before any measurement, as the bandwidth limit allows).</summary>
/// <param name="PagesPerSecond">Pages sent per second (zero pages included: they are pages done).</param>
/// <param name="WireBytesPerPage">Bytes on the link per page sent (the RAM multiple counts bytes).</param>
internal readonly record struct SendRate(double PagesPerSecond, double WireBytesPerPage)
{
    /// <summary>
    /// The current round's own rate once it has run <see cref="MigrationEta.MinRateSeconds"/>;
    /// before that the last live round's; before any, the bandwidth limit at a full page's wire
    /// cost; without a limit, the current round's after its first 50 ms. Null: nothing measured yet.
    /// </summary>
    public static SendRate? Of(EtaInput x)
    {
        RoundSample? last = x.LiveRounds.Count > 0 ? x.LiveRounds[^1] : null;
        double perPage = x.RoundPagesSent > 0 ? (double)x.RoundWireBytes / x.RoundPagesSent
            : last is { PagesSent: > 0 } l ? (double)l.WireBytes / l.PagesSent
            : x.PageWireBytes;
        perPage = Math.Max(1, perPage);
        if (x.RoundSeconds >= MigrationEta.MinRateSeconds && x.RoundPagesSent > 0)
        {
            return new SendRate(x.RoundPagesSent / x.RoundSeconds, perPage);
        }
        if (last is { Seconds: > 0, PagesSent: > 0 } measured)
        {
            return new SendRate(measured.PagesSent / measured.Seconds, perPage);
        }
        if (x.Options.MaxBandwidthBytesPerSecond > 0)
        {
            int page = Math.Max(1, x.PageWireBytes);
            return new SendRate((double)x.Options.MaxBandwidthBytesPerSecond / page, page);
        }
        if (x.RoundSeconds >= 0.05 && x.RoundPagesSent > 0)
        {
            return new SendRate(x.RoundPagesSent / x.RoundSeconds, perPage);
        }
        return null;
    }
}

/// <summary>
/// The ETA of a source migration as a pure function of one snapshot (<see cref="EtaInput"/>): no
/// clock, no state. Pre-copy's live rounds go through <see cref="PreCopyEta"/> (the series of rounds
/// to come, or the bound that ends them when they do not shrink); a paused copy is the pages left ÷
/// the send rate; post-copy is the pages still at the source ÷ the push rate.
/// </summary>
public static class MigrationEta
{
    /// <summary>Seconds of a round after which its own send rate is trusted over the last round's (or the limit).</summary>
    public const double MinRateSeconds = 0.25;

    public static EtaResult Estimate(EtaInput x)
    {
        switch (x.Phase)
        {
            case MigrationPhase.Completed:
                return EtaResult.Done;
            case MigrationPhase.Setup or MigrationPhase.PostCopyPaused
                or MigrationPhase.Failed or MigrationPhase.Cancelled or MigrationPhase.Unconfirmed:
                // Before the offer is accepted nothing is measured; a paused post-copy waits for a link, not for bytes; an end is an end.
                return EtaResult.Unknown;
            case MigrationPhase.PostCopyConfirm:
                // Every page is out: only the destination's confirmation is left.
                return new EtaResult(EtaKind.Estimate, 0);
        }
        if (SendRate.Of(x) is not { } rate)
        {
            return EtaResult.Unknown;
        }
        double r = rate.PagesPerSecond;
        switch (x.Phase)
        {
            case MigrationPhase.PreCopy when x.RoundKind == RoundKind.Live:
                return PreCopyEta.Estimate(x, rate);
            case MigrationPhase.Draining or MigrationPhase.Pausing when x.LiveRounds.Count > 0:
            {
                // The last harvest is what the paused copy (or post-copy) will send.
                double left = x.LiveRounds[^1].PagesDirtied / r;
                return new EtaResult(EtaKind.Estimate, left, RoundSeconds: left);
            }
            case MigrationPhase.StopAndCopy:
            {
                double left = Math.Max(0, x.RoundPages - x.RoundPagesSent) / r;
                return new EtaResult(EtaKind.Estimate, left, RoundSeconds: left);
            }
            case MigrationPhase.State or MigrationPhase.Switchover or MigrationPhase.Commit or MigrationPhase.PostCopy:
            {
                // Post-copy: what is still here, at the rate pages go (demand answers and the push together).
                double left = Math.Max(0, x.PostCopyPages) / r;
                return new EtaResult(EtaKind.Estimate, left, RoundSeconds: x.Phase == MigrationPhase.PostCopy ? left : null);
            }
            default:
                return EtaResult.Unknown;
        }
    }
}
