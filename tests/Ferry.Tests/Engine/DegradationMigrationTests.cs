using System.Text.Json;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Engine;

/// <summary>The report's degradation counts the guest's work wherever it ran: at the source until the pause, at the destination after it.</summary>
public sealed class DegradationMigrationTests
{
    private static VirtualMachine Started(VmConfig config, ulong minOps)
    {
        var vm = VirtualMachine.Create(config);
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps >= minOps, TimeSpan.FromSeconds(30), "the guest did some work");
        return vm;
    }

    [Fact]
    public void Post_copy_counts_the_work_the_guest_did_at_the_destination()
    {
        // Most of an 8 MiB working set written before the switch, pushed at 16 MiB/s: the guest runs at
        // the destination for about half a second while pages are still missing.
        using var vm = Started(new VmConfig { Id = "deg", MemoryBytes = 32L << 20, Vcpus = 2, Workload = "memtouch:rate=20000,wss=8MiB,pattern=uniform,content=random,seed=3" }, 10_000);
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        var outcome = LoopbackMigration.Run(vm, options);
        Assert.Null(outcome.DestinationError);
        outcome.Destination!.Dispose();
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        Assert.True(r.PostCopy.Used);
        DegradationMetrics d = r.Degradation;
        Assert.True(d.BaselineOpsPerSecond > 0);

        Assert.True(d.ResumeOps > 0, "no guest work counted at the destination while pages were missing");
        Assert.True(d.DestinationOps >= d.ResumeOps, $"destination ops {d.DestinationOps} < resume-phase ops {d.ResumeOps}");
        Assert.Equal(d.SourceOps + d.DestinationOps, d.DuringOps);
        Assert.True(d.DuringOps >= d.SourceOps + d.ResumeOps);
        // The destination's spans are measured on its own clock; the resume phase is part of the run it reports.
        Assert.True(d.DestinationMs >= r.Timing.ResumeMs && r.Timing.ResumeMs > 0);
        Assert.Equal(d.ResumeOps!.Value / (r.Timing.ResumeMs / 1000), d.ResumeOpsPerSecond!.Value, 6);
        Assert.NotNull(d.ResumeDegradationPercent);

        // What counting only the source's work (the old figure) would have said; the destination's work must lower it.
        double sourceOnly = DegradationCalculator.Percent(d.SourceOps / (r.Timing.TotalMs / 1000), d.BaselineOpsPerSecond);
        Assert.True(d.DuringOpsPerSecond > d.SourceOps / (r.Timing.TotalMs / 1000));
        Assert.True(d.DegradationPercent < sourceOnly, $"whole-migration degradation {d.DegradationPercent:0.0} % is not below the source-only {sourceOnly:0.0} %");
    }

    [Fact]
    public void Pre_copy_counts_the_source_alone_and_reports_no_resume_phase()
    {
        using var vm = Started(new VmConfig { Id = "deg-pre", MemoryBytes = 16L << 20, Vcpus = 1, Workload = "memtouch:rate=2000,wss=2MiB,seed=5" }, 500);
        var outcome = LoopbackMigration.Run(vm, new MigrationOptions { Technique = MigrationTechnique.PreCopy });
        Assert.Null(outcome.DestinationError);
        outcome.Destination!.Dispose();
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        DegradationMetrics d = r.Degradation;
        // The destination's VM ran inside this interval only while Resumed travelled: no count, by design (docs/report.md).
        Assert.Equal(0, d.DestinationOps);
        Assert.Equal(0, d.DestinationMs);
        Assert.Equal(d.SourceOps, d.DuringOps);
        Assert.Equal(d.SourceOps / (r.Timing.TotalMs / 1000), d.DuringOpsPerSecond, 6);
        Assert.Null(d.ResumeOps);
        Assert.Null(d.ResumeDegradationPercent);
    }

    [Theory]
    [InlineData(MigrationTechnique.PostCopy)]
    [InlineData(MigrationTechnique.PreCopy)]
    public void An_idle_guest_reports_zero_degradation_and_a_report_that_serialises(MigrationTechnique technique)
    {
        // RAM holds data, so post-copy has pages to fetch after the VM resumed, but the guest never runs an op.
        using var vm = VirtualMachine.Create(new VmConfig { Id = "deg-idle", MemoryBytes = 4L << 20, Vcpus = 1, Workload = "idle", Fill = RamFill.Random });
        vm.Start();
        var options = new MigrationOptions { Technique = technique, MaxBandwidthBytesPerSecond = 16L << 20 };
        var outcome = LoopbackMigration.Run(vm, options);
        Assert.Null(outcome.DestinationError);
        outcome.Destination!.Dispose();
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        DegradationMetrics d = r.Degradation;
        Assert.Equal(0, d.BaselineOpsPerSecond);
        Assert.Equal(0, d.DuringOps);
        Assert.Equal(0, d.DegradationPercent);
        Assert.Equal(0, d.LiveDegradationPercent);
        if (technique == MigrationTechnique.PostCopy)
        {
            Assert.True(r.Timing.ResumeMs > 0);
            Assert.Equal(0, d.ResumeOps);
            Assert.Equal(0, d.ResumeDegradationPercent);
        }
        else
        {
            Assert.Null(d.ResumeDegradationPercent);
        }
        // A NaN or an infinity from a division by zero would make the report unwritable.
        JsonSerializer.Serialize(r);
    }
}
