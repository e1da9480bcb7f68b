namespace Ferry.Core.Reporting;

/// <summary>
/// What the guest did at the destination while the migration still depended on the source, as the
/// destination measured it. Only durations cross hosts: the two clocks are never compared.
/// </summary>
public sealed record DestinationWork
{
    /// <summary>Guest operations from the VM running there to the last pending page installed (the resume phase).</summary>
    public long ResumeOps { get; init; }

    /// <summary>The resume phase's length on the destination's clock.</summary>
    public double ResumeMs { get; init; }

    /// <summary>Guest operations from the VM running there to the destination's last report (post-copy: PostCopyEnd received).</summary>
    public long Ops { get; init; }

    /// <summary>That span on the destination's clock.</summary>
    public double Ms { get; init; }
}

/// <summary>
/// The degradation arithmetic of the report (docs/report.md, "degradation"): the guest's op rate
/// during the migration against its rate before it, counting the work wherever the guest ran.
/// </summary>
public static class DegradationCalculator
{
    /// <param name="baselineOpsPerSecond">The guest's rate before the migration (0: an idle guest, or no history).</param>
    /// <param name="baselineWindowMs">How much history that rate covers.</param>
    /// <param name="sourceOps">Operations at the source from the start to the pause (or to the end, if it never paused).</param>
    /// <param name="liveMs">Start → pause on the source's clock (the total, if it never paused).</param>
    /// <param name="totalMs">The migration's wall interval on the source's clock.</param>
    /// <param name="destination">The destination's own count, or null when it sent none (pre-copy, or a post-copy that never completed).</param>
    public static DegradationMetrics Compute(double baselineOpsPerSecond, double baselineWindowMs, long sourceOps, double liveMs, double totalMs,
        DestinationWork? destination)
    {
        // The destination's span lies inside the source's interval (its VM starts after the commit
        // was sent and reports before the source hears back), so its ops add to the same interval.
        long destinationOps = destination?.Ops ?? 0;
        long duringOps = sourceOps + destinationOps;
        double during = PerSecond(duringOps, totalMs);
        double live = PerSecond(sourceOps, liveMs);
        bool hasResumePhase = destination is { ResumeMs: > 0 };
        double? resume = hasResumePhase ? PerSecond(destination!.ResumeOps, destination.ResumeMs) : null;
        return new DegradationMetrics
        {
            BaselineWindowMs = baselineWindowMs,
            BaselineOpsPerSecond = baselineOpsPerSecond,
            SourceOps = sourceOps,
            DestinationOps = destinationOps,
            DestinationMs = destination?.Ms ?? 0,
            DuringOps = duringOps,
            DuringOpsPerSecond = during,
            DegradationPercent = Percent(during, baselineOpsPerSecond),
            LiveOpsPerSecond = live,
            LiveDegradationPercent = liveMs > 0 ? Percent(live, baselineOpsPerSecond) : 0,
            ResumeOps = hasResumePhase ? destination!.ResumeOps : null,
            ResumeOpsPerSecond = resume,
            ResumeDegradationPercent = resume is { } r ? Percent(r, baselineOpsPerSecond) : null,
        };
    }

    /// <summary>1 − rate ÷ baseline in percent, floored at 0 (a guest catching up after a stall is not "negative" degradation); 0 without a baseline.</summary>
    public static double Percent(double rate, double baselineOpsPerSecond) =>
        baselineOpsPerSecond > 0 && double.IsFinite(rate) ? Math.Max(0, (1 - rate / baselineOpsPerSecond) * 100) : 0;

    private static double PerSecond(long ops, double ms) => ms > 0 && double.IsFinite(ms) ? ops / (ms / 1000) : 0;
}
