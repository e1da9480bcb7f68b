using Ferry.Agent.Api;
using Ferry.Agent.Migrations;
using Ferry.EndToEnd.Tests;

namespace Ferry.Faults.Tests;

/// <summary>
/// A destination stopped with SIGSTOP (what a silent partition looks like) at each phase, and a
/// frozen source. Before the stall watch, a frozen destination in stop-and-copy kept the source VM
/// paused for as long as it was watched (140 s), a cancel did nothing, and in pre-copy the
/// migration hung for ever with its VM neither deletable nor migratable.
/// </summary>
public sealed class FrozenPeerTests
{
    [Theory]
    [InlineData("precopy")]
    [InlineData("stop-and-copy")]
    public async Task A_destination_frozen_mid_copy_fails_the_migration_at_the_stall_timeout_and_the_source_VM_runs_on(string technique)
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key);
        using var spare = AgentProcess.Start(key);
        await Scene.CreateVm(source, "frozen-dest");
        var m = await Scene.Start(source, destination, "frozen-dest", technique);
        await Scene.InPhase(source, m.Id, v => v.Progress!.WireBytes > 8 << 20, "8 MiB on the wire");
        MigrationView end;
        using (Signals.Frozen(destination.Pid))
        {
            end = await Scene.Ended(source, m.Id);
        }
        Assert.Equal(OutgoingState.Failed, end.State);
        Assert.Contains("stalled", end.Error);
        await Scene.AssertRunning(source, "frozen-dest");
        // Thawed, the destination finds its source gone and lets everything go.
        await Scene.AssertHoldsNothing(destination, TimeSpan.FromSeconds(40));
        await Scene.AssertMigratesWhole(source, spare, "frozen-dest");
    }

    [Fact]
    public async Task A_cancel_takes_effect_while_the_destination_is_frozen_and_the_VM_is_free_again()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key);
        await Scene.CreateVm(source, "frozen-cancel");
        // A stall timeout far beyond the test: only the cancel can end this.
        var m = await Scene.Start(source, destination, "frozen-cancel", "stop-and-copy", stall: "10m");
        await Scene.InPhase(source, m.Id, v => v.Progress!.WireBytes > 8 << 20, "8 MiB on the wire");
        using (Signals.Frozen(destination.Pid))
        {
            // Let the kernel's buffers fill so the source's write blocks.
            await Task.Delay(TimeSpan.FromSeconds(2));
            await source.Client.CancelMigrationAsync(m.Id, default);
            var end = await Wait.UntilAsync(() => source.Client.GetMigrationAsync(m.Id, default), v => v.State.IsFinished(), TimeSpan.FromSeconds(10), "the cancel to take effect");
            Assert.Equal(OutgoingState.Cancelled, end.State);
            await Scene.AssertRunning(source, "frozen-cancel");
            // Free again: it can be deleted (it could not, before).
            await source.Client.DeleteVmAsync("frozen-cancel", default);
        }
        Assert.Empty(await source.Client.ListVmsAsync(default));
    }

    [Fact]
    public async Task A_source_frozen_mid_copy_is_given_up_by_the_destination_and_the_source_VM_survives_the_thaw()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key, "--stall-timeout", "2s");
        await Scene.CreateVm(source, "frozen-src");
        var m = await Scene.Start(source, destination, "frozen-src");
        await Scene.InPhase(source, m.Id, v => v.Progress!.WireBytes > 8 << 20, "8 MiB on the wire");
        using (Signals.Frozen(source.Pid))
        {
            // The destination's idle watch lets the VM's RAM go while the source is frozen.
            await Scene.AssertHoldsNothing(destination, TimeSpan.FromSeconds(30));
        }
        MigrationView end = await Scene.Ended(source, m.Id);
        Assert.Equal(OutgoingState.Failed, end.State);
        await Scene.AssertRunning(source, "frozen-src");
        Assert.Empty(await destination.Client.ListVmsAsync(default));
    }
}
