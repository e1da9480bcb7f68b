using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Tracking;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Engine;

/// <summary>
/// The same program with the same seed, run N operations, ends with the same memory whether or
/// not it was migrated in the middle (design.md §2).
/// </summary>
public sealed class EquivalenceTests
{
    // Long enough (4 s of guest work) that a slow migration on a loaded 2-core machine still ends before the guest does.
    private const long OpsPerVcpu = 160_000;

    private static VmConfig Config(string workload) => new()
    {
        Id = "eq",
        MemoryBytes = 64L << 20,
        Vcpus = 2,
        Workload = workload,
        OpsLimitPerVcpu = OpsPerVcpu,
    };

    [Theory]
    [InlineData(MigrationTechnique.PreCopy, "memtouch:rate=40000,wss=16MiB,pattern=zipf,seed=7", null)]
    [InlineData(MigrationTechnique.PreCopy, "memtouch:rate=40000,wss=32MiB,pattern=uniform,content=random,seed=3", null)]
    [InlineData(MigrationTechnique.StopAndCopy, "memtouch:rate=40000,wss=16MiB,pattern=hot-cold,seed=11", null)]
    [InlineData(MigrationTechnique.PostCopy, "memtouch:rate=40000,wss=16MiB,pattern=zipf,seed=7", PageInstallChoice.Copy)]
    [InlineData(MigrationTechnique.PostCopy, "memtouch:rate=40000,wss=16MiB,pattern=zipf,seed=7", PageInstallChoice.Uffd)]
    [InlineData(MigrationTechnique.PostCopy, "memtouch:rate=40000,wss=32MiB,pattern=uniform,content=random,seed=3", PageInstallChoice.Copy)]
    [InlineData(MigrationTechnique.PostCopy, "memtouch:rate=40000,wss=32MiB,pattern=uniform,content=random,seed=3", PageInstallChoice.Uffd)]
    [InlineData(MigrationTechnique.Hybrid, "memtouch:rate=40000,wss=16MiB,pattern=hot-cold,seed=11", PageInstallChoice.Copy)]
    [InlineData(MigrationTechnique.Hybrid, "memtouch:rate=40000,wss=16MiB,pattern=hot-cold,seed=11", PageInstallChoice.Uffd)]
    [InlineData(MigrationTechnique.Auto, "memtouch:rate=40000,wss=32MiB,pattern=uniform,content=random,seed=5", null)]
    public void Migrated_run_ends_with_the_same_memory_as_an_unmigrated_one(MigrationTechnique technique, string workload, PageInstallChoice? pageInstall) =>
        AssertEquivalent(technique, workload, pageInstall, DirtyLogChoice.Software);

    /// <summary>The live rounds of hybrid (and pre-copy) under the kernel dirty log, into either fault path.</summary>
    [LinuxTheory(HostNeeds.KernelDirtyLog)]
    [InlineData(MigrationTechnique.Hybrid, PageInstallChoice.Uffd)]
    [InlineData(MigrationTechnique.Hybrid, PageInstallChoice.Copy)]
    [InlineData(MigrationTechnique.PreCopy, PageInstallChoice.Uffd)]
    public void The_same_holds_with_the_kernel_dirty_log(MigrationTechnique technique, PageInstallChoice pageInstall) =>
        AssertEquivalent(technique, "memtouch:rate=40000,wss=16MiB,pattern=hot-cold,seed=13", pageInstall, DirtyLogChoice.Kernel);

    private static void AssertEquivalent(MigrationTechnique technique, string workload, PageInstallChoice? pageInstall, DirtyLogChoice dirtyLog)
    {
        VmConfig config = Config(workload);
        ulong expected = ReferenceRun.Digest(config);

        var vm = VirtualMachine.Create(config);
        vm.Start();
        // Migrate part-way through: wait until the guest has done some work but not all.
        SpinWait.SpinUntil(() => vm.TotalOps > 10_000, TimeSpan.FromSeconds(30));
        bool postCopy = technique is MigrationTechnique.PostCopy or MigrationTechnique.Hybrid;
        var options = new MigrationOptions
        {
            Technique = technique,
            PreCopy = new PreCopyOptions { MaxRounds = 5 },
            // Post-copy paced so the guest runs ahead of its pages and takes faults on the path under test.
            MaxBandwidthBytesPerSecond = postCopy ? 24L << 20 : 0,
        };
        var outcome = LoopbackMigration.Run(vm, options, dirtyLog: dirtyLog, pageInstall: pageInstall);
        Assert.Null(outcome.DestinationError);
        Assert.Equal(MigrationOutcome.Completed, outcome.Source.Report.Outcome);
        Assert.True(outcome.Source.VmMoved);
        Assert.True(outcome.Source.Report.Verification.DigestsMatch);
        Assert.True(outcome.Source.Report.Verification.SourceRehashMatches);
        if (technique != MigrationTechnique.PostCopy)
        {
            Assert.Equal(dirtyLog == DirtyLogChoice.Kernel ? "kernel" : "software", outcome.Source.Report.DirtyLog.Backend);
        }
        if (postCopy)
        {
            string expectedPath = pageInstall == PageInstallChoice.Uffd ? "userfaultfd" : "software";
            Assert.StartsWith(expectedPath, outcome.Source.Report.PostCopy.FaultPath);
        }
        long opsAtSwitch = (long)vm.TotalOps;
        Assert.True(opsAtSwitch < 2 * OpsPerVcpu, $"migration happened after the guest finished ({opsAtSwitch} ops); the test proves nothing");
        vm.Dispose();

        using VirtualMachine dest = outcome.Destination!;
        ReferenceRun.AssertFinishesWith(dest, expected);
        Assert.Equal((ulong)(2 * OpsPerVcpu), dest.TotalOps);
    }
}
