using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Tracking;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Kernel;

/// <summary>
/// The engine unchanged, the kernel log underneath: a pre-copy migration of a running, writing
/// guest ends with the same memory as an unmigrated run of the same program (design.md §2).
/// </summary>
public sealed class KernelLogMigrationTests
{
    // Long enough (4 s of guest work) that a slow migration on a loaded 2-core machine still ends before the guest does.
    private const long OpsPerVcpu = 160_000;

    [LinuxTheory(HostNeeds.KernelDirtyLog)]
    [InlineData("memtouch:rate=40000,wss=16MiB,pattern=zipf,seed=7")]
    [InlineData("memtouch:rate=40000,wss=32MiB,pattern=uniform,content=random,seed=3")]
    public void Pre_copy_with_the_kernel_log_ends_with_the_same_memory_as_an_unmigrated_run(string workload)
    {
        var config = new VmConfig { Id = "kq", MemoryBytes = 64L << 20, Vcpus = 2, Workload = workload, OpsLimitPerVcpu = OpsPerVcpu };
        ulong expected = ReferenceRun.Digest(config);

        var vm = VirtualMachine.Create(config);
        vm.Start();
        Assert.True(SpinWait.SpinUntil(() => vm.TotalOps > 10_000, TimeSpan.FromSeconds(30)), "guest did not start working within 30 s");
        var options = new MigrationOptions { Technique = MigrationTechnique.PreCopy, PreCopy = new PreCopyOptions { MaxRounds = 5 } };
        LoopbackMigration.Outcome outcome = LoopbackMigration.Run(vm, options, dirtyLog: DirtyLogChoice.Kernel);
        Assert.Null(outcome.DestinationError);
        Assert.Equal(MigrationOutcome.Completed, outcome.Source.Report.Outcome);
        Assert.Equal("kernel", outcome.Source.Report.DirtyLog.Backend);
        Assert.True(outcome.Source.Report.Verification.DigestsMatch);
        Assert.True((long)vm.TotalOps < 2 * OpsPerVcpu, $"migration happened after the guest finished ({vm.TotalOps} ops); the test proves nothing");
        vm.Dispose();

        using VirtualMachine dest = outcome.Destination!;
        ReferenceRun.AssertFinishesWith(dest, expected);
    }
}
