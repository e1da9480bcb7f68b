using Ferry.Agent.Migrations;
using Ferry.Core.Migration;
using Ferry.Agent.Api;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Failures during pre-copy between real agent processes: the source VM keeps running and its
/// workload never stops, the migration is reported failed with its cause, the destination keeps
/// nothing, and a second migration of the same VM then succeeds.
/// </summary>
public sealed class MigrationFailureTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(90);

    // 96 MiB of random bytes at 12 MB/s: round 1 alone takes ~8 s, long enough to interfere with.
    private static CreateVmRequest SlowVm(string id) => new()
    {
        Id = id,
        Memory = "96MiB",
        Workload = "memtouch:rate=5000,wss=32MiB,seed=5",
        Fill = "random",
    };

    private static StartMigrationRequest Slow(string vmId, Uri target, string dirtyLog) => new()
    {
        VmId = vmId,
        Target = target.ToString(),
        MaxBandwidth = "12MB/s",
        DirtyLog = dirtyLog,
    };

    private static async Task<MigrationView> WaitUntilPagesFlow(AgentProcess source, string migrationId) =>
        await Wait.UntilAsync(() => source.Client.GetMigrationAsync(migrationId, default),
            v => v.State != OutgoingState.Connecting && v.Progress is { RoundPagesSent: > 2000 } || v.State is OutgoingState.Failed or OutgoingState.Completed,
            Long, "pages to flow");

    private static async Task AssertStillRunning(AgentProcess source, string vmId)
    {
        VmView a = await source.Client.GetVmAsync(vmId, default);
        Assert.Equal("running", a.State);
        await Wait.UntilAsync(() => source.Client.GetVmAsync(vmId, default), v => v.Ops > a.Ops + 500, TimeSpan.FromSeconds(30),
            "the source VM's workload to keep making progress");
    }

    private static async Task AssertSecondMigrationSucceeds(AgentProcess source, string vmId, KeyFile key)
    {
        using var fresh = AgentProcess.Start(key);
        var m = await source.Client.StartMigrationAsync(new StartMigrationRequest { VmId = vmId, Target = fresh.Api.ToString() }, default);
        var done = await Wait.UntilAsync(() => source.Client.GetMigrationAsync(m.Id, default), v => v.State is not (OutgoingState.Connecting or OutgoingState.Running), Long, "second migration");
        Assert.Equal(OutgoingState.Completed, done.State);
        Assert.True(done.Report!.Verification.DigestsMatch);
        var there = await fresh.Client.GetVmAsync(vmId, default);
        Assert.Equal("running", there.State);
        await Assert.ThrowsAsync<Agent.Client.AgentApiException>(() => source.Client.GetVmAsync(vmId, default));
    }

    [Fact]
    public Task Destination_killed_during_precopy_leaves_the_source_running_and_a_retry_succeeds() => DestinationKilled("software");

    [KernelDirtyLogFact]
    public Task Destination_killed_during_precopy_with_the_kernel_dirty_log() => DestinationKilled("kernel");

    [Fact]
    public Task Cancel_during_precopy_leaves_the_source_running_the_destination_empty_and_a_retry_succeeds() => Cancelled("software");

    [KernelDirtyLogFact]
    public Task Cancel_during_precopy_with_the_kernel_dirty_log() => Cancelled("kernel");

    private static async Task DestinationKilled(string dirtyLog)
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var dest = AgentProcess.Start(key);
        await source.Client.CreateVmAsync(SlowVm("victim"), default);
        var m = await source.Client.StartMigrationAsync(Slow("victim", dest.Api, dirtyLog), default);
        var flowing = await WaitUntilPagesFlow(source, m.Id);
        Assert.Equal(OutgoingState.Running, flowing.State);
        ulong opsBefore = (await source.Client.GetVmAsync("victim", default)).Ops;

        dest.Kill();

        var failed = await Wait.UntilAsync(() => source.Client.GetMigrationAsync(m.Id, default), v => v.State is not (OutgoingState.Connecting or OutgoingState.Running), Long, "the migration to fail");
        Assert.Equal(OutgoingState.Failed, failed.State);
        Assert.NotNull(failed.Error);
        Assert.Matches("(?i)destination|connection", failed.Error);
        Assert.Equal(MigrationOutcome.Failed, failed.Report!.Outcome);
        Assert.Equal(dirtyLog, failed.Report.DirtyLog.Backend);
        Assert.True((await source.Client.GetVmAsync("victim", default)).Ops > opsBefore, "the workload must not stop while the migration fails");
        await AssertStillRunning(source, "victim");
        await AssertSecondMigrationSucceeds(source, "victim", key);
    }

    private static async Task Cancelled(string dirtyLog)
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var dest = AgentProcess.Start(key);
        await source.Client.CreateVmAsync(SlowVm("keeper"), default);
        var m = await source.Client.StartMigrationAsync(Slow("keeper", dest.Api, dirtyLog), default);
        await WaitUntilPagesFlow(source, m.Id);

        await source.Client.CancelMigrationAsync(m.Id, default);

        var cancelled = await Wait.UntilAsync(() => source.Client.GetMigrationAsync(m.Id, default), v => v.State is not (OutgoingState.Connecting or OutgoingState.Running), Long, "the cancel to take effect");
        Assert.Equal(OutgoingState.Cancelled, cancelled.State);
        await AssertStillRunning(source, "keeper");
        // The destination discarded what it received.
        var incoming = await Wait.UntilAsync(() => dest.Client.ListIncomingAsync(default), l => l.Length == 1 && l[0].State == IncomingState.Failed, Long, "the destination to drop the migration");
        Assert.Contains("abort", incoming[0].Error!, StringComparison.OrdinalIgnoreCase);
        Assert.Empty(await dest.Client.ListVmsAsync(default));
        await AssertSecondMigrationSucceeds(source, "keeper", key);
    }
}
