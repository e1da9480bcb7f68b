using System.Net;
using Ferry.Agent.Api;
using Ferry.Agent.Client;
using Ferry.Agent.Migrations;
using Ferry.EndToEnd.Tests;

namespace Ferry.Faults.Tests;

/// <summary>What an agent takes in: ids and guest memory are promised at the offer, and never more than the budget.</summary>
public sealed class AdmissionTests
{
    [Fact]
    public async Task Two_VMs_of_one_id_migrating_to_one_agent_one_arrives_and_the_other_stays_running_at_its_source()
    {
        using var key = new KeyFile();
        using var first = AgentProcess.Start(key);
        using var second = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key);
        await Scene.CreateVm(first, "twin", "128MiB");
        await Scene.CreateVm(second, "twin", "128MiB");
        // Slow enough that both offers arrive while the first is still under way.
        // 40 MB/s: the 8 MiB the guest rewrites fits the 300 ms downtime limit, so it converges.
        var a = await Scene.Start(first, destination, "twin", bandwidth: "40MB/s", stall: "10s");
        await Scene.InPhase(first, a.Id, v => v.Progress!.WireBytes > 1 << 20, "the first migration under way");
        var b = await Scene.Start(second, destination, "twin", bandwidth: "40MB/s", stall: "10s");
        MigrationView endA = await Scene.Ended(first, a.Id);
        MigrationView endB = await Scene.Ended(second, b.Id);
        Assert.Equal(OutgoingState.Completed, endA.State);
        Assert.Equal(OutgoingState.Failed, endB.State);
        Assert.Contains("already migrating to this agent", endB.Error);
        // Exactly one VM at the destination, the one that completed; the refused one runs where it was.
        VmView[] there = await destination.Client.ListVmsAsync(default);
        Assert.Equal("twin", Assert.Single(there).Id);
        Assert.Empty(await first.Client.ListVmsAsync(default));
        await Scene.AssertRunning(second, "twin");
    }

    [Fact]
    public async Task The_memory_budget_refuses_creates_and_incoming_offers_that_do_not_fit_and_the_source_keeps_its_VM()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var small = AgentProcess.Start(key, "--memory-budget", "192MiB");
        await small.Client.CreateVmAsync(new CreateVmRequest { Id = "fits", Memory = "128MiB" }, default);
        var tooBig = await Assert.ThrowsAsync<AgentApiException>(() => small.Client.CreateVmAsync(new CreateVmRequest { Id = "too-big", Memory = "128MiB" }, default));
        Assert.Equal(HttpStatusCode.InsufficientStorage, tooBig.Status);
        Assert.Contains("budget", tooBig.Message);

        await Scene.CreateVm(source, "incoming", "128MiB");
        var m = await Scene.Start(source, small, "incoming", bandwidth: "", stall: "10s");
        MigrationView end = await Scene.Ended(source, m.Id);
        Assert.Equal(OutgoingState.Failed, end.State);
        Assert.Contains("budget", end.Error);
        await Scene.AssertRunning(source, "incoming");
        Assert.Equal("fits", Assert.Single(await small.Client.ListVmsAsync(default)).Id);

        // Room made, the same migration goes through.
        await small.Client.DeleteVmAsync("fits", default);
        await Scene.AssertMigratesWhole(source, small, "incoming");
    }
}
