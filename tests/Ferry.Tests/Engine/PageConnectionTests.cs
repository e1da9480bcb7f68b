using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Reporting;
using Ferry.Engine.Destination;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Engine;

/// <summary>
/// Page connections: page batches spread over 1, 2 or 4 connections beside the control one. Every
/// technique still ends with the memory of an unmigrated run; one page connection cut mid-round
/// fails the migration before the switch (the source runs on); one cut after a post-copy switch is
/// recovered with the others.
/// </summary>
public sealed class PageConnectionTests
{
    // Long enough (4 s of guest work) that a slow migration on a loaded 2-core machine still ends before the guest does.
    private const long OpsPerVcpu = 160_000;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(90);

    private static VmConfig Config(string workload) => new()
    {
        Id = "lanes",
        MemoryBytes = 64L << 20,
        Vcpus = 2,
        Workload = workload,
        OpsLimitPerVcpu = OpsPerVcpu,
    };

    private const string Workload = "memtouch:rate=40000,wss=24MiB,pattern=uniform,content=random,seed=17";

    private static readonly Lazy<ulong> Reference = new(() => ReferenceRun.Digest(Config(Workload)));

    public static TheoryData<MigrationTechnique, int> Cases()
    {
        var data = new TheoryData<MigrationTechnique, int>();
        foreach (MigrationTechnique t in Enum.GetValues<MigrationTechnique>())
        {
            foreach (int n in new[] { 1, 2, 4 })
            {
                data.Add(t, n);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_technique_over_page_connections_ends_with_the_memory_of_an_unmigrated_run(MigrationTechnique technique, int connections)
    {
        ulong expected = Reference.Value;
        using var vm = VirtualMachine.Create(Config(Workload));
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 10_000, TimeSpan.FromSeconds(30), "the guest did some work");
        bool postCopy = technique is MigrationTechnique.PostCopy or MigrationTechnique.Hybrid;
        var options = new MigrationOptions
        {
            Technique = technique,
            PreCopy = new PreCopyOptions { MaxRounds = 5 },
            MaxBandwidthBytesPerSecond = postCopy ? 24L << 20 : 0,
        };
        LoopbackMigration.Outcome outcome = Bounded.Run(() => LoopbackMigration.Run(vm, options, pageConnections: connections), Limit,
            $"{technique} over {connections} page connections");
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        Assert.Equal(connections, r.Settings.PageConnectionsUsed);
        Assert.True(r.Verification.DigestsMatch);
        Assert.True(r.Verification.SourceRehashMatches);
        Assert.True((long)vm.TotalOps < 2 * OpsPerVcpu, "the migration happened after the guest finished; the test proves nothing");
        using VirtualMachine dest = outcome.Destination!;
        ReferenceRun.AssertFinishesWith(dest, expected);
    }

    [Fact]
    public void Without_page_connections_on_offer_the_destination_takes_none_and_one_connection_carries_everything()
    {
        using var vm = VirtualMachine.Create(Config("memtouch:rate=20000,wss=8MiB,seed=2") with { OpsLimitPerVcpu = null });
        vm.Start();
        var outcome = LoopbackMigration.Run(vm, new MigrationOptions { Technique = MigrationTechnique.PreCopy }, pageConnections: 0);
        Assert.Equal(MigrationOutcome.Completed, outcome.Source.Report.Outcome);
        Assert.Equal(0, outcome.Source.Report.Settings.PageConnectionsUsed);
        outcome.Destination?.Dispose();
    }

    [Theory]
    [InlineData(MigrationTechnique.PreCopy)]
    [InlineData(MigrationTechnique.StopAndCopy)]
    public void A_page_connection_cut_mid_round_fails_before_the_switch_and_the_source_runs_on(MigrationTechnique technique)
    {
        using var vm = VirtualMachine.Create(Config("memtouch:rate=20000,wss=8MiB,pattern=uniform,seed=4") with { OpsLimitPerVcpu = null, Fill = RamFill.Random });
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 1_000, TimeSpan.FromSeconds(30), "the guest did some work");
        int opened = 0;
        TruncatingStream? cut = null;
        var options = new MigrationOptions { Technique = technique, SwitchoverTimeout = TimeSpan.FromSeconds(20) };
        LoopbackMigration.Outcome outcome = Bounded.Run(() => LoopbackMigration.Run(vm, options, pageConnections: 2,
            // The second page connection breaks 2 MiB in, in the middle of round 1.
            wrapReconnected: s => Interlocked.Increment(ref opened) == 2 ? cut = new TruncatingStream(s, limit: 2L << 20) : s), Limit, "a cut page connection");
        Assert.True(cut?.Cut, "the page connection was never cut: the test proved nothing");
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Failed, r.Outcome);
        Assert.False(outcome.Source.VmMoved);
        Assert.Contains("page connection 1", r.Error);
        Assert.Null(outcome.Destination);
        Assert.Equal(VmRunState.Running, vm.State);
        ulong before = vm.TotalOps;
        Bounded.WaitUntil(() => vm.TotalOps > before + 200, TimeSpan.FromSeconds(20), "the source VM keeps doing work");
    }

    [Fact]
    public void A_page_connection_cut_after_a_post_copy_switch_is_recovered_with_every_page()
    {
        using var vm = VirtualMachine.Create(Config("memtouch:rate=50000,wss=24MiB,pattern=uniform,content=random,seed=8") with { OpsLimitPerVcpu = null });
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 5_000, TimeSpan.FromSeconds(30), "the guest did some work");
        int opened = 0;
        TruncatingStream? cut = null;
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        var limits = new DestinationLimits { PostCopyRecovery = new PostCopyRecoveryRegistry() };
        LoopbackMigration.Outcome outcome = Bounded.Run(() => LoopbackMigration.Run(vm, options, limits: limits, pageConnections: 2,
            // The first page connection carries pushed pages after the switch; it breaks 4 MiB in.
            wrapReconnected: s => Interlocked.Increment(ref opened) == 1 ? cut = new TruncatingStream(s, limit: 4L << 20) : s), Limit, "a cut page connection in post-copy");
        Assert.True(cut?.Cut, "the page connection was never cut: the test proved nothing");
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        Assert.True(r.Verification.DigestsMatch);
        Assert.True(r.PostCopy.Recoveries >= 1);
        Assert.Equal(2, r.Settings.PageConnectionsUsed);
        Assert.Equal(VmRunState.Paused, vm.State);
        using VirtualMachine dest = outcome.Destination!;
        ulong ops = dest.TotalOps;
        Bounded.WaitUntil(() => dest.TotalOps > ops + 1_000, TimeSpan.FromSeconds(30), "the migrated guest keeps running");
    }
}
