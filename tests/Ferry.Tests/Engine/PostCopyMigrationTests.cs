using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Reporting;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Engine;

/// <summary>Post-copy over a real loopback migration: faults are answered, every page arrives, and a broken link never leaves two VMs running.</summary>
public sealed class PostCopyMigrationTests
{
    private static VmConfig Config(string workload, long memory = 64L << 20) => new()
    {
        Id = "pc",
        MemoryBytes = memory,
        Vcpus = 2,
        Workload = workload,
    };

    private static VirtualMachine Started(VmConfig config, ulong minOps = 5_000)
    {
        var vm = VirtualMachine.Create(config);
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > minOps, TimeSpan.FromSeconds(30), "the guest did some work");
        return vm;
    }

    [Theory]
    [InlineData(PageInstallChoice.Copy, "software")]
    [InlineData(PageInstallChoice.Uffd, "userfaultfd")]
    public void Demand_faults_happen_are_answered_and_every_page_arrives(PageInstallChoice install, string faultPath)
    {
        // 24 MiB written at random; pushed at 16 MiB/s the guest touches missing pages long before the push ends.
        using var vm = Started(Config("memtouch:rate=50000,wss=24MiB,pattern=uniform,content=random,seed=9"));
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        var outcome = LoopbackMigration.Run(vm, options, pageInstall: install);
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Completed, r.Outcome);
        Assert.Equal("postcopy", r.Technique);
        Assert.StartsWith(faultPath, r.PostCopy.FaultPath);
        Assert.True(outcome.Source.VmMoved);
        Assert.True(r.Verification.DigestsMatch, r.Error);
        Assert.True(r.Verification.SourceRehashMatches);

        PostCopyMetrics pc = r.PostCopy;
        Assert.True(pc.Used);
        Assert.Equal(0, pc.PreCopyRounds);
        Assert.True(pc.Faults > 0, "no vCPU ever waited for a page");
        Assert.True(pc.DemandPages > 0, "no page was sent on demand");
        Assert.True(pc.PrePagedPages > 0, "no page was pre-paged around a fault");
        Assert.Equal(pc.PendingAtSwitchover, pc.DemandPages + pc.PrePagedPages + pc.PushPages);
        Assert.True(pc.FaultLatencyMaxMs >= pc.FaultLatencyP99Ms && pc.FaultLatencyP99Ms >= pc.FaultLatencyP50Ms && pc.FaultLatencyP50Ms > 0);
        Assert.True(pc.ZeroFilledLocally > 0, "never-written pages should stay at the source");
        Assert.Equal(r.Vm.MemoryBytes / 4096, pc.PendingAtSwitchover + pc.ZeroFilledLocally);
        Assert.True(r.Timing.ResumeMs > 0);
        Assert.True(r.Timing.TotalMs >= r.Timing.PreparationMs + r.Timing.DowntimeMs);
        // The push honours the bandwidth limit (answers to faults may jump the queue; the push pays them back).
        double bytesPerSecond = r.Pages.WireBytes / (r.Timing.TotalMs / 1000);
        Assert.True(bytesPerSecond <= (16L << 20) * 1.25, $"post-copy sent {bytesPerSecond / 1e6:0.0} MB/s over a 16 MiB/s limit");
        Assert.Equal(VmRunState.Paused, vm.State);

        using VirtualMachine dest = outcome.Destination!;
        Assert.Null(dest.Memory.PostCopy);           // every page present: accesses no longer check
        Assert.Null(dest.Failure);
        Assert.Equal(VmRunState.Running, dest.State);
        ulong before = dest.TotalOps;
        Bounded.WaitUntil(() => dest.TotalOps > before + 1_000, TimeSpan.FromSeconds(30), "the migrated guest keeps running");
    }

    [Fact]
    public void Hybrid_moves_the_bulk_live_and_the_rest_after_resuming()
    {
        using var vm = Started(Config("memtouch:rate=40000,wss=16MiB,pattern=hot-cold,seed=4"));
        var options = new MigrationOptions { Technique = MigrationTechnique.Hybrid, HybridRounds = 2 };
        var outcome = LoopbackMigration.Run(vm, options);
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Completed, r.Outcome);
        Assert.True(r.PostCopy.Used);
        Assert.Equal(2, r.PostCopy.PreCopyRounds);
        Assert.Equal(2, r.Settings.HybridRounds);
        Assert.Contains("2 pre-copy rounds", r.PostCopy.SwitchReason);
        Assert.Equal(["live", "live", "post-copy"], r.Rounds.Select(x => x.Kind));
        Assert.True(r.Verification.DigestsMatch);
        outcome.Destination!.Dispose();
    }

    [Fact]
    public void Source_killed_after_switchover_stops_the_destination_vm_with_a_clear_failure()
    {
        using var vm = Started(Config("memtouch:rate=50000,wss=24MiB,pattern=uniform,content=random,seed=2"));
        TruncatingStream? link = null;
        // Enough for the offer, state, pending map and switchover; the link dies a few hundred pages into post-copy.
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        var outcome = LoopbackMigration.Run(vm, options, s => link = new TruncatingStream(s, limit: 2L << 20),
            limits: new DestinationLimits { PageWaitTimeout = TimeSpan.FromSeconds(5) });
        Assert.True(link!.Cut);

        Assert.Null(outcome.Destination);
        var destError = Assert.IsType<MigrationFailedException>(outcome.DestinationError);
        Assert.Contains("post-copy failed after the VM resumed here", destError.Message);
        // Said plainly, with what was lost: pages that never came, and how long the guest ran here first.
        Assert.Matches(@"The VM could not be completed: \d+ pages \([\d.]+ MiB\) never arrived from the source; it ran here for [\d.]+ s and is now stopped and discarded", destError.Message);

        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Failed, r.Outcome);
        Assert.False(outcome.Source.VmMoved);
        Assert.Contains("post-copy failed after the VM resumed at the destination", r.Error);
        Assert.Contains("source keeps its paused copy", r.Error);
        // The destination ran the guest: resuming the source copy would fork it, so it stays paused.
        Assert.Equal(VmRunState.Paused, vm.State);
    }

    [Fact]
    public void Without_a_bandwidth_limit_the_push_paces_itself_just_below_the_link_it_measures()
    {
        // 24 MiB to move over a 24 MiB/s link: about a second, long enough for the estimate to settle.
        using var vm = Started(Config("memtouch:rate=50000,wss=24MiB,pattern=uniform,content=random,seed=9"));
        const double link = 24 << 20;
        SlowLink? slow = null;
        var outcome = LoopbackMigration.Run(vm, new MigrationOptions { Technique = MigrationTechnique.PostCopy },
            s => slow = new SlowLink(s, link), linkDelivery: _ => new Ferry.Core.Pacing.LinkDelivery(slow!.Delivered));
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Completed, r.Outcome);
        Assert.True(r.Verification.DigestsMatch, r.Error);
        double paced = r.PostCopy.AutoPacedBytesPerSecond;
        double measured = r.PostCopy.MeasuredLinkBytesPerSecond;
        Assert.True(paced > 0, "the push never paced itself");
        // Paced just below what it measured …
        Assert.Equal(Ferry.Core.Pacing.PostCopyAutoPacing.Fraction, paced / measured, 3);
        // … and what it measured is the link: never above it, and well above nothing. (A busy machine
        // leaves gaps in the sender, and the slow link gives no credit for them, so the measure can
        // come out below the link; it cannot come out above it.)
        Assert.InRange(measured / link, 0.3, 1.1);
    }

    [Fact]
    public void A_bandwidth_limit_given_by_the_user_is_never_replaced_by_automatic_pacing()
    {
        using var vm = Started(Config("memtouch:rate=50000,wss=8MiB,pattern=uniform,content=random,seed=9"));
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 32L << 20 };
        var outcome = LoopbackMigration.Run(vm, options, linkDelivery: _ => new Ferry.Core.Pacing.LinkDelivery(0));
        Assert.Equal(MigrationOutcome.Completed, outcome.Source.Report.Outcome);
        Assert.Equal(0, outcome.Source.Report.PostCopy.AutoPacedBytesPerSecond);
    }

    [Theory]
    [InlineData(PageInstallChoice.Copy)]
    [InlineData(PageInstallChoice.Uffd)]
    public void A_silent_source_after_switchover_ends_in_a_bounded_page_wait(PageInstallChoice install)
    {
        using var vm = Started(Config("memtouch:rate=50000,wss=24MiB,pattern=uniform,content=random,seed=6"));
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        StallingStream? link = null;
        var outcome = Bounded.Run(() => LoopbackMigration.Run(vm, options, s => link = new StallingStream(s, limit: 1L << 20, TimeSpan.FromSeconds(3)),
            limits: new DestinationLimits { PageWaitTimeout = TimeSpan.FromMilliseconds(300) }, pageInstall: install), TimeSpan.FromSeconds(60), "a post-copy whose source went silent");
        Assert.True(link!.Stalled);
        var destError = Assert.IsType<MigrationFailedException>(outcome.DestinationError);
        Assert.Equal(MigrationFailure.Timeout, destError.Kind);
        Assert.Contains("did not arrive within 0.3 s", destError.Message);
        Assert.Equal(MigrationOutcome.Failed, outcome.Source.Report.Outcome);
        Assert.Equal(VmRunState.Paused, vm.State);
    }

    [Fact]
    public void Auto_switches_to_post_copy_when_the_guest_dirties_faster_than_the_link_sends()
    {
        // The whole 4 MiB working set is rewritten every round over a 4 MiB/s link: pre-copy cannot
        // converge. Which rule sees it first (dirty rate ≥ bandwidth, or no shrinking) depends on timing.
        using var vm = Started(Config("memtouch:rate=50000,wss=4MiB,pattern=uniform,content=random,seed=8"));
        var options = new MigrationOptions { Technique = MigrationTechnique.Auto, MaxBandwidthBytesPerSecond = 4L << 20 };
        var outcome = LoopbackMigration.Run(vm, options);
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Completed, r.Outcome);
        Assert.Equal("auto", r.Technique);
        Assert.True(r.PostCopy.Used);
        Assert.Matches("≥ bandwidth|did not shrink", r.PostCopy.SwitchReason);
        Assert.Equal("SwitchToPostCopy", r.Rounds[^2].Decision);
        Assert.True(r.Verification.DigestsMatch);
        outcome.Destination!.Dispose();
    }

    [Fact]
    public void Auto_that_converges_ends_in_an_ordinary_stop_and_copy()
    {
        using var vm = Started(Config("memtouch:rate=2000,wss=2MiB,pattern=hot-cold,seed=8"), minOps: 1_000);
        var outcome = LoopbackMigration.Run(vm, new MigrationOptions { Technique = MigrationTechnique.Auto });
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Completed, r.Outcome);
        Assert.False(r.PostCopy.Used);
        Assert.Equal("stop-and-copy", r.Rounds[^1].Kind);
        Assert.True(r.Verification.DigestsMatch);
        outcome.Destination!.Dispose();
    }

    [Fact]
    public void A_link_broken_after_switchover_is_recovered_over_a_new_connection_and_nothing_is_lost()
    {
        // Ops-limited so the end state can be compared with a run that never migrated.
        VmConfig config = Config("memtouch:rate=40000,wss=24MiB,pattern=uniform,content=random,seed=12") with { OpsLimitPerVcpu = 60_000 };
        ulong expected = ReferenceRun.Digest(config);

        using var vm = Started(config);
        TruncatingStream? first = null;
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        var limits = new DestinationLimits { PostCopyRecovery = new PostCopyRecoveryRegistry(), PageWaitTimeout = TimeSpan.FromSeconds(20) };
        var outcome = LoopbackMigration.Run(vm, options, s => first = new TruncatingStream(s, limit: 2L << 20), limits: limits);
        Assert.True(first!.Cut);
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        Assert.Equal(1, r.PostCopy.Recoveries);
        Assert.Equal(0, r.PostCopy.DuplicatePages);
        Assert.True(r.Verification.DigestsMatch);
        Assert.Contains("1 reconnection(s)", r.Rounds[^1].Reason);
        Assert.Equal(VmRunState.Paused, vm.State);

        using VirtualMachine dest = outcome.Destination!;
        ReferenceRun.AssertFinishesWith(dest, expected);
    }

    [Fact]
    public void A_source_that_never_comes_back_ends_the_pause_after_the_recovery_timeout()
    {
        using var vm = Started(Config("memtouch:rate=50000,wss=24MiB,pattern=uniform,content=random,seed=13"));
        var options = new MigrationOptions
        {
            Technique = MigrationTechnique.PostCopy,
            MaxBandwidthBytesPerSecond = 16L << 20,
            PostCopyRecoveryTimeout = TimeSpan.FromSeconds(1),
            PostCopyPauseLimit = TimeSpan.FromSeconds(1),
        };
        var limits = new DestinationLimits
        {
            PostCopyRecovery = new PostCopyRecoveryRegistry(),
            RecoveryTimeout = TimeSpan.FromSeconds(1),
            PageWaitTimeout = TimeSpan.FromSeconds(20),
        };
        // Every new connection breaks at once as well: the source keeps trying until its recovery timeout.
        var outcome = Bounded.Run(() => LoopbackMigration.Run(vm, options, s => new TruncatingStream(s, limit: 2L << 20), limits: limits,
            wrapReconnected: s => new TruncatingStream(s, limit: 0)), TimeSpan.FromSeconds(60), "a post-copy whose link never comes back");
        var destError = Assert.IsType<MigrationFailedException>(outcome.DestinationError);
        Assert.Contains("the source did not reconnect within 1 s", destError.Message);
        Assert.Contains("never arrived from the source", destError.Message);
        Assert.Equal(MigrationOutcome.Failed, outcome.Source.Report.Outcome);
        Assert.Contains("post-copy stayed paused for 1 s (its pause limit)", outcome.Source.Report.Error);
        Assert.Equal(VmRunState.Paused, vm.State);
    }

    [Fact]
    public void A_resume_for_a_migration_nobody_waits_for_is_refused()
    {
        var registry = new PostCopyRecoveryRegistry();
        var wire = new MemoryStream(Ferry.Protocol.Framing.FrameWriter.Encode(Ferry.Protocol.Framing.FrameType.PostCopyResume,
            Ferry.Protocol.Messages.ControlJson.Encode(new Ferry.Protocol.Messages.PostCopyResume { MigrationId = "m-gone" }), 0));
        var ex = Assert.Throws<MigrationFailedException>(() => registry.Accept(wire));
        Assert.Equal(MigrationFailure.Refused, ex.Kind);
        Assert.Contains("m-gone", ex.Message);
        Assert.Empty(registry.Waiting);
    }
}
