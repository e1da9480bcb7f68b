using Ferry.Agent.Api;
using Ferry.Agent.Migrations;
using Ferry.EndToEnd.Tests;

namespace Ferry.Faults.Tests;

/// <summary>SIGTERM is a graceful stop: the agent refuses new work and lets migrations in progress end. Before, a destination in post-copy threw its VM away in 0.1 s.</summary>
public sealed class ShutdownTests
{
    [Fact]
    public async Task A_destination_told_to_stop_during_post_copy_lets_the_post_copy_finish_first()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key, "--shutdown-timeout", "60s");
        await Scene.CreateVm(source, "graceful", "256MiB");
        var m = await Scene.Start(source, destination, "graceful", "postcopy", bandwidth: "40MB/s", stall: "10s");
        await Scene.InPhase(source, m.Id, v => v.Progress!.Phase == Core.Migration.MigrationPhase.PostCopy, "post-copy under way");
        Signals.Send(destination.Pid, Signals.SigTerm);
        // New work is refused meanwhile.
        var refused = await Assert.ThrowsAnyAsync<Exception>(() => destination.Client.CreateVmAsync(new CreateVmRequest { Id = "late", Memory = "4MiB" }, default));
        Assert.Contains("shutting down", refused.Message);
        MigrationView end = await Scene.Ended(source, m.Id);
        Assert.True(end.State == OutgoingState.Completed, $"post-copy {end.State}: {end.Error}");
        Assert.True(end.Report!.Verification.DigestsMatch);
        await Wait.UntilAsync(() => Task.FromResult(destination.HasExited), e => e, TimeSpan.FromSeconds(60), "the destination to exit after the post-copy");
        Assert.Contains("Shutdown: every migration in progress ended", destination.Log);
    }
}
