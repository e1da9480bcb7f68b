using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Protocol;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Protocol;

/// <summary>
/// A real migration over loopback TCP through a damaging link. Whatever the link does, the
/// migration ends with a clear error, the source VM keeps running, and the destination keeps nothing.
/// </summary>
public sealed class LinkFailureTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static VirtualMachine StartedVm(string id)
    {
        var vm = VirtualMachine.Create(new VmConfig
        {
            Id = id,
            MemoryBytes = 16L << 20,
            Vcpus = 1,
            Workload = "memtouch:rate=20000,wss=8MiB,pattern=uniform,seed=3",
            Fill = RamFill.Random,
        });
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 1000, TimeSpan.FromSeconds(30), "the guest has done some work");
        return vm;
    }

    private static MigrationOptions Options(MigrationTechnique technique) => new()
    {
        Technique = technique,
        PreCopy = new PreCopyOptions { MaxRounds = 3 },
        BaselineWindow = TimeSpan.FromMilliseconds(200),
        SwitchoverTimeout = TimeSpan.FromSeconds(20),
    };

    private static void AssertSourceStillRuns(VirtualMachine vm)
    {
        Assert.Equal(VmRunState.Running, vm.State);
        ulong before = vm.TotalOps;
        Bounded.WaitUntil(() => vm.TotalOps > before + 200, TimeSpan.FromSeconds(20), "the source VM keeps doing work after the failed migration");
    }

    [Theory]
    [InlineData(MigrationTechnique.PreCopy)]
    [InlineData(MigrationTechnique.StopAndCopy)] // the source is paused when the damage hits: it must be resumed
    public void Corrupting_link_fails_the_migration_and_the_source_keeps_running(MigrationTechnique technique)
    {
        using VirtualMachine vm = StartedVm("corrupt");
        CorruptingStream? link = null;
        LoopbackMigration.Outcome outcome = Bounded.Run(
            () => LoopbackMigration.Run(vm, Options(technique), s => link = new CorruptingStream(s, targetBatch: 3)),
            Limit, "migration over a corrupting link");

        Assert.True(link!.Corrupted, "the link never corrupted a page: the test proved nothing");
        Assert.Equal(MigrationOutcome.Failed, outcome.Source.Report.Outcome);
        Assert.False(outcome.Source.VmMoved);
        Assert.False(string.IsNullOrEmpty(outcome.Source.Report.Error));

        Assert.Null(outcome.Destination);
        var error = Assert.IsType<ProtocolException>(outcome.DestinationError);
        Assert.Equal(ProtocolErrorKind.ChecksumMismatch, error.Kind);
        Assert.Contains("checksum mismatch in frame", error.Message);
        Assert.Contains("PageBatch", error.Message);

        AssertSourceStillRuns(vm);
    }

    [Fact]
    public void Corrupting_link_is_reported_at_the_source_as_a_checksum_mismatch()
    {
        using VirtualMachine vm = StartedVm("corrupt-report");
        CorruptingStream? link = null;
        LoopbackMigration.Outcome outcome = Bounded.Run(
            () => LoopbackMigration.Run(vm, Options(MigrationTechnique.PreCopy), s => link = new CorruptingStream(s, targetBatch: 3)),
            Limit, "migration over a corrupting link");
        Assert.True(link!.Corrupted);
        Assert.Equal(MigrationOutcome.Failed, outcome.Source.Report.Outcome);
        Assert.Contains("checksum", outcome.Source.Report.Error, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData(MigrationTechnique.PreCopy, 300_000)]
    [InlineData(MigrationTechnique.StopAndCopy, 300_000)]
    [InlineData(MigrationTechnique.PreCopy, 100)]         // inside the offer
    public void Truncating_link_fails_the_migration_and_the_source_keeps_running(MigrationTechnique technique, long cutAfter)
    {
        using VirtualMachine vm = StartedVm("truncate");
        TruncatingStream? link = null;
        LoopbackMigration.Outcome outcome = Bounded.Run(
            () => LoopbackMigration.Run(vm, Options(technique), s => link = new TruncatingStream(s, cutAfter)),
            Limit, "migration over a truncating link");

        Assert.True(link!.Cut, "the link was never cut: the test proved nothing");
        Assert.Equal(MigrationOutcome.Failed, outcome.Source.Report.Outcome);
        Assert.False(outcome.Source.VmMoved);
        Assert.False(string.IsNullOrEmpty(outcome.Source.Report.Error));

        Assert.Null(outcome.Destination);
        var error = Assert.IsType<ProtocolException>(outcome.DestinationError);
        Assert.Equal(ProtocolErrorKind.Truncated, error.Kind);
        Assert.Contains("stream ended", error.Message);

        AssertSourceStillRuns(vm);
    }
}
