using Ferry.Agent.Api;
using Ferry.Agent.Migrations;
using Ferry.EndToEnd.Tests;

namespace Ferry.Faults.Tests;

/// <summary>What every scene needs: agents on loopback, a VM with a known id, a migration followed to its end, and the checks that a VM is alive.</summary>
internal static class Scene
{
    public static readonly TimeSpan Long = TimeSpan.FromSeconds(90);

    /// <summary>A VM of random RAM (so every page crosses the link) whose guest keeps writing: its ops rise while it runs.</summary>
    public static Task<VmView> CreateVm(AgentProcess agent, string id, string memory = "256MiB") =>
        agent.Client.CreateVmAsync(new CreateVmRequest { Id = id, Memory = memory, Fill = "random", Workload = "memtouch:rate=2000,wss=8MiB" }, default);

    /// <summary>Starts a slow migration (bandwidth-limited, so each phase lasts long enough to be hit).</summary>
    public static Task<MigrationView> Start(AgentProcess from, AgentProcess to, string vmId, string technique = "precopy", string bandwidth = "20MB/s", string stall = "2s") =>
        from.Client.StartMigrationAsync(new StartMigrationRequest
        {
            VmId = vmId,
            Target = to.Api.ToString(),
            Technique = technique,
            MaxBandwidth = bandwidth,
            StallTimeout = stall,
            DirtyLog = "software",
        }, default);

    public static Task<MigrationView> Ended(AgentProcess from, string migrationId) =>
        Wait.UntilAsync(() => from.Client.GetMigrationAsync(migrationId, default), m => m.State.IsFinished(), Long, $"migration {migrationId} ended");

    public static Task<MigrationView> InPhase(AgentProcess from, string migrationId, Func<MigrationView, bool> where, string what) =>
        Wait.UntilAsync(() => from.Client.GetMigrationAsync(migrationId, default), m => where(m) || m.State.IsFinished(), Long, what);

    /// <summary>The VM runs at <paramref name="agent"/>: listed, running, its ops rising.</summary>
    public static async Task AssertRunning(AgentProcess agent, string id)
    {
        VmView first = await Wait.UntilAsync(() => agent.Client.GetVmAsync(id, default), v => v.State == "running" && !v.Migrating, TimeSpan.FromSeconds(30), $"VM {id} running and free");
        await Wait.UntilAsync(() => agent.Client.GetVmAsync(id, default), v => v.Ops > first.Ops, TimeSpan.FromSeconds(30), $"VM {id}'s ops rising");
    }

    /// <summary>The agent holds no VM and no migration on its way in.</summary>
    public static Task AssertHoldsNothing(AgentProcess agent, TimeSpan within) =>
        Wait.UntilAsync(() => Thawing(async () => (await agent.Client.ListVmsAsync(default)).Length +
                (await agent.Client.ListIncomingAsync(default)).Count(i => i.State is IncomingState.Receiving or IncomingState.PostCopy), -1),
            n => n == 0, within, "the agent to hold nothing");

    /// <summary>
    /// A probe of an agent just thawed from SIGSTOP: its server drops the connections whose timers
    /// ran out while it was frozen, so the client's pooled connection may be reset once. That
    /// answer counts as "not yet" (<paramref name="notYet"/>); the next probe connects afresh.
    /// </summary>
    public static async Task<T> Thawing<T>(Func<Task<T>> probe, T notYet)
    {
        try
        {
            return await probe();
        }
        catch (Ferry.Agent.Client.AgentApiException ex) when (ex.Status == System.Net.HttpStatusCode.ServiceUnavailable)
        {
            return notYet;
        }
    }

    /// <summary>Migrates the VM once more, to a fresh agent, and checks it arrives whole (equal digests).</summary>
    public static async Task AssertMigratesWhole(AgentProcess from, AgentProcess to, string id)
    {
        MigrationView started = await Start(from, to, id, bandwidth: "", stall: "10s");
        MigrationView end = await Ended(from, started.Id);
        Assert.True(end.State == OutgoingState.Completed, $"second migration {end.State}: {end.Error}");
        Assert.True(end.Report!.Verification.DigestsMatch);
        await AssertRunning(to, id);
    }
}
