using Ferry.Core.Reporting;

namespace Ferry.Tests.Core;

public sealed class DegradationCalculatorTests
{
    [Fact]
    public void Pre_copy_counts_the_source_alone_and_has_no_resume_phase()
    {
        // 10,000 ops/s before; 9,000 ops in 1 s of live rounds, then 250 ms paused: 9,000 ops over 1.25 s.
        DegradationMetrics d = DegradationCalculator.Compute(10_000, 3_000, sourceOps: 9_000, liveMs: 1_000, totalMs: 1_250, destination: null);
        Assert.Equal(9_000, d.SourceOps);
        Assert.Equal(0, d.DestinationOps);
        Assert.Equal(9_000, d.DuringOps);
        Assert.Equal(7_200, d.DuringOpsPerSecond, 6);
        Assert.Equal(28, d.DegradationPercent, 6);
        Assert.Equal(9_000, d.LiveOpsPerSecond, 6);
        Assert.Equal(10, d.LiveDegradationPercent, 6);
        Assert.Null(d.ResumeOps);
        Assert.Null(d.ResumeOpsPerSecond);
        Assert.Null(d.ResumeDegradationPercent);
        Assert.Equal(3_000, d.BaselineWindowMs);
    }

    [Fact]
    public void Post_copy_adds_the_destinations_work_to_the_same_interval()
    {
        // Pure post-copy: 10 ops before the immediate pause, then the guest runs at the destination
        // for 900 ms of a 1 s migration, doing 6,000 ops, 4,000 of them while pages were still missing (800 ms).
        var dest = new DestinationWork { ResumeOps = 4_000, ResumeMs = 800, Ops = 6_000, Ms = 900 };
        DegradationMetrics d = DegradationCalculator.Compute(10_000, 3_000, sourceOps: 10, liveMs: 5, totalMs: 1_000, dest);
        Assert.Equal(6_010, d.DuringOps);
        Assert.Equal(6_000, d.DestinationOps);
        Assert.Equal(900, d.DestinationMs);
        Assert.Equal(6_010, d.DuringOpsPerSecond, 6);
        Assert.Equal(39.9, d.DegradationPercent, 6);
        // Counting the source alone would have said 99.9 %.
        Assert.True(d.DegradationPercent < DegradationCalculator.Percent(10 / 1.0, 10_000));
        Assert.Equal(4_000, d.ResumeOps);
        Assert.Equal(5_000, d.ResumeOpsPerSecond!.Value, 6);
        Assert.Equal(50, d.ResumeDegradationPercent!.Value, 6);
        // The live figure stays the source's.
        Assert.Equal(2_000, d.LiveOpsPerSecond, 6);
    }

    [Fact]
    public void An_idle_guest_reads_zero_everywhere_and_nothing_is_not_a_number()
    {
        var dest = new DestinationWork { ResumeOps = 0, ResumeMs = 120, Ops = 0, Ms = 130 };
        DegradationMetrics d = DegradationCalculator.Compute(0, 3_000, sourceOps: 0, liveMs: 0, totalMs: 150, dest);
        Assert.Equal(0, d.DegradationPercent);
        Assert.Equal(0, d.LiveDegradationPercent);
        Assert.Equal(0, d.ResumeDegradationPercent);
        Assert.Equal(0, d.ResumeOpsPerSecond);
        Assert.Equal(0, d.DuringOpsPerSecond);
        Assert.Equal(0, d.LiveOpsPerSecond);
    }

    [Fact]
    public void Empty_intervals_give_zero_rates_not_infinities()
    {
        // A resume phase of 0 ms (no page was missing when the VM started) is no resume phase.
        var dest = new DestinationWork { ResumeOps = 0, ResumeMs = 0, Ops = 50, Ms = 1 };
        DegradationMetrics d = DegradationCalculator.Compute(1_000, 3_000, sourceOps: 100, liveMs: 0, totalMs: 0, dest);
        Assert.Equal(0, d.DuringOpsPerSecond);
        Assert.Equal(0, d.LiveOpsPerSecond);
        Assert.Equal(0, d.LiveDegradationPercent);
        Assert.Null(d.ResumeOps);
        Assert.Null(d.ResumeDegradationPercent);
        Assert.True(double.IsFinite(d.DegradationPercent));
    }

    [Fact]
    public void A_guest_faster_than_its_baseline_is_not_negative_degradation()
    {
        var dest = new DestinationWork { ResumeOps = 3_000, ResumeMs = 100, Ops = 3_000, Ms = 100 };
        DegradationMetrics d = DegradationCalculator.Compute(10_000, 3_000, sourceOps: 12_000, liveMs: 1_000, totalMs: 1_000, dest);
        Assert.Equal(0, d.DegradationPercent);
        Assert.Equal(0, d.LiveDegradationPercent);
        Assert.Equal(0, d.ResumeDegradationPercent);
        Assert.Equal(30_000, d.ResumeOpsPerSecond!.Value, 6);
    }
}
