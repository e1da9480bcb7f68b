using Ferry.Agent.Api;
using Ferry.Agent.Migrations;
using Ferry.Core.Migration;
using Ferry.EndToEnd.Tests;

namespace Ferry.Faults.Tests;

/// <summary>
/// SIGKILL of either side, and a cancel, at each phase before the commit point: setup (the
/// destination frozen, so the offer is never answered), round 1, a later round, and the final
/// stop-and-copy. Every scene ends with the VM in exactly one place: at its source, running (or,
/// when the source was killed, nowhere: the destination keeps nothing and gives its RAM back).
/// After the commit point, post-copy recovery's rules apply (PostCopyRecoveryTests in the
/// end-to-end project).
/// </summary>
public sealed class PhaseFaultTests
{
    public enum Phase
    {
        Setup,
        RoundOne,
        LaterRound,
        StopAndCopy,
    }

    /// <summary>A 192 MiB guest at 40 MB/s: round 1 (or the stop-and-copy) lasts about 5 s, long enough to be hit.</summary>
    private const string Memory = "192MiB";

    private const string Bandwidth = "40MB/s";

    /// <summary>The guest of the later-round scene dirties 80 MB/s over 64 MiB, faster than the link: rounds follow each other until the policy's bound.</summary>
    private const string BusyWorkload = "memtouch:rate=20000,wss=64MiB";

    private static string TechniqueFor(Phase phase) => phase == Phase.StopAndCopy ? "stop-and-copy" : "precopy";

    private static bool Reached(MigrationView v, Phase phase) => v.Progress is { } p && phase switch
    {
        Phase.Setup => p.Phase == MigrationPhase.Setup,
        Phase.RoundOne => p.Phase == MigrationPhase.PreCopy && p.Round == 1 && p.WireBytes > 8 << 20,
        Phase.LaterRound => p.Phase == MigrationPhase.PreCopy && p.Round >= 2,
        Phase.StopAndCopy => p.Phase == MigrationPhase.StopAndCopy && p.WireBytes > 8 << 20,
        _ => false,
    };

    private static async Task<VmView> CreateVm(AgentProcess agent, string id, Phase phase) =>
        await agent.Client.CreateVmAsync(new CreateVmRequest
        {
            Id = id,
            Memory = Memory,
            Fill = "random",
            Workload = phase == Phase.LaterRound ? BusyWorkload : "memtouch:rate=2000,wss=8MiB",
        }, default);

    /// <summary>Starts the migration and returns once it is in <paramref name="phase"/> (the destination frozen for Setup: the caller thaws or kills it).</summary>
    private static async Task<(MigrationView Migration, IDisposable? Frozen)> StartAndReach(AgentProcess source, AgentProcess destination, string id, Phase phase, string stall)
    {
        IDisposable? frozen = phase == Phase.Setup ? Signals.Frozen(destination.Pid) : null;
        MigrationView m = await Scene.Start(source, destination, id, TechniqueFor(phase), Bandwidth, stall);
        MigrationView at = await Scene.InPhase(source, m.Id, v => Reached(v, phase), $"phase {phase}");
        Assert.False(at.State.IsFinished(), $"the migration ended ({at.State}: {at.Error}) before reaching {phase}");
        return (m, frozen);
    }

    [Theory]
    [InlineData(Phase.Setup)]
    [InlineData(Phase.RoundOne)]
    [InlineData(Phase.LaterRound)]
    [InlineData(Phase.StopAndCopy)]
    public async Task A_destination_killed_fails_the_migration_and_the_source_VM_runs_on_and_migrates_again(Phase phase)
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key);
        using var spare = AgentProcess.Start(key);
        string id = "killed-dest-" + phase.ToString().ToLowerInvariant();
        await CreateVm(source, id, phase);
        (MigrationView m, IDisposable? frozen) = await StartAndReach(source, destination, id, phase, stall: "10s");
        using (frozen)
        {
            destination.Kill();
        }
        MigrationView end = await Scene.Ended(source, m.Id);
        Assert.Equal(OutgoingState.Failed, end.State);
        Assert.Matches("(?i)destination|connection|closed|reset|unreachable", end.Error ?? "");
        AssertReport(phase, end, MigrationOutcome.Failed);
        await Scene.AssertRunning(source, id);
        Assert.Single(await source.Client.ListVmsAsync(default));
        await Scene.AssertMigratesWhole(source, spare, id);
    }

    [Theory]
    [InlineData(Phase.RoundOne)]
    [InlineData(Phase.LaterRound)]
    [InlineData(Phase.StopAndCopy)]
    public async Task A_source_killed_leaves_the_destination_holding_nothing_and_its_memory_given_back(Phase phase)
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key);
        await destination.Client.InfoAsync(default);
        long before = Signals.ResidentBytes(destination.Pid);
        string id = "killed-src-" + phase.ToString().ToLowerInvariant();
        await CreateVm(source, id, phase);
        await StartAndReach(source, destination, id, phase, stall: "10s");
        long during = Signals.ResidentBytes(destination.Pid);
        source.Kill();
        await Scene.AssertHoldsNothing(destination, TimeSpan.FromSeconds(30));
        Assert.Empty(await destination.Client.ListVmsAsync(default));
        // The guest RAM it had received (at least 8 MiB of random pages) is unmapped, not kept.
        long after = await Wait.UntilAsync(() => Task.FromResult(Signals.ResidentBytes(destination.Pid)),
            rss => rss - before < 48L << 20, TimeSpan.FromSeconds(20), $"the destination's memory back near {before >> 20} MiB (it held {during >> 20} MiB)");
        Assert.True(after - before < 48L << 20);
        Assert.False(destination.HasExited);
    }

    [Theory]
    [InlineData(Phase.Setup)]
    [InlineData(Phase.RoundOne)]
    [InlineData(Phase.LaterRound)]
    [InlineData(Phase.StopAndCopy)]
    public async Task A_cancel_takes_effect_at_once_and_the_VM_runs_on_free_at_its_source(Phase phase)
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key);
        string id = "cancelled-" + phase.ToString().ToLowerInvariant();
        await CreateVm(source, id, phase);
        // A stall timeout far beyond the test: only the cancel can end a frozen setup.
        (MigrationView m, IDisposable? frozen) = await StartAndReach(source, destination, id, phase, stall: "10m");
        using (frozen)
        {
            await source.Client.CancelMigrationAsync(m.Id, default);
            // Issue 9 asks for 1 s; 10 s here leaves room for a loaded CI machine while still failing a cancel that waits for a timeout.
            MigrationView end = await Wait.UntilAsync(() => source.Client.GetMigrationAsync(m.Id, default), v => v.State.IsFinished(),
                TimeSpan.FromSeconds(10), $"the cancel in {phase} to take effect");
            Assert.Equal(OutgoingState.Cancelled, end.State);
            AssertReport(phase, end, MigrationOutcome.Cancelled);
            await Scene.AssertRunning(source, id);
        }
        await Scene.AssertHoldsNothing(destination, TimeSpan.FromSeconds(30));
        // Free again: another migration of it may start, and it can be deleted.
        await source.Client.DeleteVmAsync(id, default);
        Assert.Empty(await source.Client.ListVmsAsync(default));
    }

    /// <summary>A migration that ended while connecting has no report (docs/agent-api.md): nothing was moved or measured.</summary>
    private static void AssertReport(Phase phase, MigrationView end, MigrationOutcome outcome)
    {
        if (phase == Phase.Setup)
        {
            Assert.Null(end.Report);
            Assert.False(string.IsNullOrEmpty(end.Error));
        }
        else
        {
            Assert.Equal(outcome, end.Report!.Outcome);
        }
    }
}
