using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Core.Policy;
using Ferry.Native.Linux;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Engine;

/// <summary>The destination's two ways of putting pages into guest RAM give the same memory.</summary>
public sealed class PageInstallTests
{
    private static byte[] PageOf(byte seed)
    {
        byte[] page = new byte[PageSize.Bytes];
        new Random(seed).NextBytes(page);
        return page;
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void Runs_installed_with_uffd_copy_equal_plain_copies_including_present_pages_and_gaps()
    {
        using var fast = new GuestMemory(1L << 20);
        using var plain = new GuestMemory(1L << 20);
        fast.EnableFastInstall();
        Assert.True(fast.FastInstallActive);
        var installer = new PageInstaller(fast);
        // Page 5 is already there (as if sent in an earlier round): the run must skip over it correctly.
        fast.InstallPage(5, PageOf(99));
        plain.InstallPage(5, PageOf(99));
        long[] pages = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 200, 201, 255];
        foreach (long p in pages)
        {
            byte[] content = PageOf((byte)p);
            installer.Add(p, content);
            plain.InstallPage(p, content);
        }
        installer.Flush();
        fast.DisableFastInstall();
        Assert.False(fast.FastInstallActive);
        for (long p = 0; p < fast.PageCount; p++)
        {
            Assert.Equal(plain.IsPopulated(p), fast.IsPopulated(p));
            Assert.Equal(plain.HashPage(p), fast.HashPage(p));
        }
        // Never-sent pages read as zero once unregistered (no resolver is waiting: this must not hang).
        Assert.True(Bounded.Run(() => fast.PageView(100).IndexOfAnyExcept((byte)0) < 0, TimeSpan.FromSeconds(10), "reading a never-sent page"));
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void Guest_writes_are_refused_while_registered_for_fast_install_instead_of_hanging()
    {
        using var memory = new GuestMemory(1L << 20);
        memory.EnableFastInstall();
        var ex = Bounded.Run(() => Assert.Throws<InvalidOperationException>(() => memory.Write(3, 0, [1, 2, 3])), TimeSpan.FromSeconds(10), "a guest write");
        Assert.Contains("fast install", ex.Message);
        memory.DisableFastInstall();
        memory.Write(3, 0, [1, 2, 3]);
        Assert.Equal(1, memory.PageView(3)[0]);
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void A_run_longer_than_the_staging_buffer_is_split_and_installed_whole()
    {
        using var fast = new GuestMemory(4L << 20);
        fast.EnableFastInstall();
        var installer = new PageInstaller(fast);
        for (long p = 0; p < PageInstaller.RunPages * 3 + 7; p++)
        {
            installer.Add(p, PageOf((byte)(p % 251)));
        }
        installer.Flush();
        fast.DisableFastInstall();
        for (long p = 0; p < PageInstaller.RunPages * 3 + 7; p++)
        {
            Assert.True(PageOf((byte)(p % 251)).AsSpan().SequenceEqual(fast.PageView(p)), $"page {p} differs");
        }
        Assert.False(fast.IsPopulated(PageInstaller.RunPages * 3 + 7));
    }

    [Theory]
    [InlineData(PageInstallChoice.Copy)]
    [InlineData(PageInstallChoice.Auto)]
    public void Migration_with_either_install_path_ends_with_the_memory_of_an_unmigrated_run(PageInstallChoice install)
    {
        var config = new VmConfig
        {
            Id = "install-" + install.ToString().ToLowerInvariant(),
            MemoryBytes = 32L << 20,
            Workload = "memtouch:rate=40000,wss=8MiB,content=random,seed=4",
            Fill = RamFill.Mix,
            // 3 s of guest work: a slow migration on a loaded machine still ends before the guest does.
            OpsLimitPerVcpu = 120_000,
        };
        ulong expected = ReferenceRun.Digest(config);
        using var vm = VirtualMachine.Create(config);
        vm.Start();
        Assert.True(SpinWait.SpinUntil(() => vm.TotalOps > 5_000, TimeSpan.FromSeconds(30)), "the guest did not start working");
        var outcome = LoopbackMigration.Run(vm, new MigrationOptions { PreCopy = new PreCopyOptions { MaxRounds = 3 } }, pageInstall: install);
        Assert.Null(outcome.DestinationError);
        Assert.Equal(MigrationOutcome.Completed, outcome.Source.Report.Outcome);
        Assert.True(vm.TotalOps < 120_000, "the migration happened after the guest finished; the test proves nothing");
        string expectedBackend = install == PageInstallChoice.Copy || !HostCapabilities.Current.MissingMode ? "copy" : "uffd";
        Assert.Equal(expectedBackend, outcome.Source.Report.PageInstall.Backend);
        using VirtualMachine dest = outcome.Destination!;
        ReferenceRun.AssertFinishesWith(dest, expected);
    }

    [Fact]
    public void A_forced_uffd_install_without_missing_mode_is_an_error_not_a_fallback()
    {
        var host = new HostCapabilities { IsLinux = true, UserfaultfdAccess = UserfaultfdAccess.None, UserfaultfdError = "EPERM" };
        var ex = Assert.Throws<PlatformNotSupportedException>(() => PageInstallDecision.Decide(PageInstallChoice.Uffd, host));
        Assert.Contains("no userfaultfd", ex.Message);
        Assert.Equal("copy", PageInstallDecision.Decide(PageInstallChoice.Auto, host).Backend);
        Assert.Contains("(auto)", PageInstallDecision.Decide(PageInstallChoice.Auto, host).Reason);
    }
}
