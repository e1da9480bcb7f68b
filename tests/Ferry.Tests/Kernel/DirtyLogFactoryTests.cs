using Ferry.Core.Tracking;
using Ferry.Native.Linux;
using Ferry.Tests.Support;
using Ferry.Vm.Memory;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Kernel;

/// <summary>Backend selection against fake hosts: forced kernel fails loudly, auto says why it chose.</summary>
public sealed class DirtyLogFactoryTests
{
    private static readonly HostCapabilities FullKernel = new()
    {
        IsLinux = true,
        KernelRelease = "6.18-fake",
        KernelPageSize = 4096,
        IsRoot = true,
        UserfaultfdAccess = UserfaultfdAccess.Syscall,
        Features = UserfaultfdFeatures.PagefaultFlagWp | UserfaultfdFeatures.WpAsync | UserfaultfdFeatures.WpUnpopulated,
        MissingMode = true,
        PagemapScanWorks = true,
        WriteProtectFaultCost = TimeSpan.FromMicroseconds(1),
    };

    private static readonly HostCapabilities NoPagemapScan = FullKernel with
    {
        PagemapScanWorks = false,
        PagemapScanError = "ioctl(PAGEMAP_SCAN) failed: Inappropriate ioctl for device (errno 25)",
        WriteProtectFaultCost = null,
    };

    [Fact]
    public void Forced_kernel_without_PAGEMAP_SCAN_throws_the_documented_error()
    {
        using var memory = new GuestMemory(1 << 20);
        var ex = Assert.Throws<PlatformNotSupportedException>(() => DirtyLogFactory.Create(memory, DirtyLogChoice.Kernel, NoPagemapScan));
        Assert.StartsWith("kernel dirty log requested but unavailable on this host: kernel lacks PAGEMAP_SCAN", ex.Message);
    }

    [Theory]
    [InlineData("no-uffd", "no userfaultfd (Operation not permitted (errno 1))")]
    [InlineData("no-wp-async", "kernel lacks UFFD_FEATURE_WP_ASYNC (Linux 6.7+)")]
    [InlineData("no-wp-unpopulated", "kernel lacks UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4+)")]
    [InlineData("not-linux", "not Linux")]
    [InlineData("big-pages", "kernel page size is 16384 bytes, guest pages are 4096")]
    public void Each_missing_capability_is_named_by_forced_kernel_and_by_auto(string host, string missing)
    {
        HostCapabilities caps = host switch
        {
            "no-uffd" => FullKernel with { UserfaultfdAccess = UserfaultfdAccess.None, UserfaultfdError = "Operation not permitted (errno 1)" },
            "no-wp-async" => FullKernel with { Features = UserfaultfdFeatures.PagefaultFlagWp | UserfaultfdFeatures.WpUnpopulated },
            "no-wp-unpopulated" => FullKernel with { Features = UserfaultfdFeatures.PagefaultFlagWp | UserfaultfdFeatures.WpAsync },
            "not-linux" => FullKernel with { IsLinux = false },
            "big-pages" => FullKernel with { KernelPageSize = 16384 },
            _ => throw new ArgumentOutOfRangeException(nameof(host)),
        };
        var ex = Assert.Throws<PlatformNotSupportedException>(() => DirtyLogFactory.Decide(DirtyLogChoice.Kernel, caps));
        Assert.Contains(missing, ex.Message);
        DirtyLogDecision auto = DirtyLogFactory.Decide(DirtyLogChoice.Auto, caps);
        Assert.Equal("software", auto.Backend);
        Assert.Equal($"software: {missing} (auto)", auto.Reason);
    }

    [Fact]
    public void Auto_without_PAGEMAP_SCAN_creates_a_software_log_that_says_why()
    {
        using var memory = new GuestMemory(1 << 20);
        using var log = DirtyLogFactory.Create(memory, DirtyLogChoice.Auto, NoPagemapScan);
        Assert.Equal("software", log.Backend);
        Assert.StartsWith("software: kernel lacks PAGEMAP_SCAN", log.Reason);
    }

    [Fact]
    public void Auto_follows_the_measured_fault_cost()
    {
        DirtyLogDecision cheap = DirtyLogFactory.Decide(DirtyLogChoice.Auto, FullKernel with { WriteProtectFaultCost = DirtyLogFactory.AutoKernelMaxFaultCost });
        Assert.Equal("kernel", cheap.Backend);
        Assert.StartsWith(DirtyLogFactory.KernelReason + " (auto: a write-protect fault costs", cheap.Reason);

        DirtyLogDecision dear = DirtyLogFactory.Decide(DirtyLogChoice.Auto, FullKernel with { WriteProtectFaultCost = TimeSpan.FromMicroseconds(20) });
        Assert.Equal("software", dear.Backend);
        Assert.StartsWith("software: a write-protect fault costs 20.0 µs here (auto takes the kernel log at ≤ 0.3 µs)", dear.Reason);

        DirtyLogDecision unmeasured = DirtyLogFactory.Decide(DirtyLogChoice.Auto, FullKernel with { WriteProtectFaultCost = null });
        Assert.Equal("software", unmeasured.Backend);
    }

    [Fact]
    public void Software_is_always_available_and_kernel_by_name_says_so()
    {
        Assert.Equal(new DirtyLogDecision("software", "software: requested"), DirtyLogFactory.Decide(DirtyLogChoice.Software, NoPagemapScan));
        Assert.Equal(new DirtyLogDecision("kernel", DirtyLogFactory.KernelReason), DirtyLogFactory.Decide(DirtyLogChoice.Kernel, FullKernel));
    }

    [LinuxFact(HostNeeds.KernelDirtyLog)]
    public void Forced_kernel_on_this_host_creates_a_working_kernel_log()
    {
        using var memory = new GuestMemory(1 << 20);
        using var log = DirtyLogFactory.Create(memory, DirtyLogChoice.Kernel);
        Assert.Equal("kernel", log.Backend);
        Assert.Equal("kernel: userfaultfd WP_ASYNC + PAGEMAP_SCAN", log.Reason);
        log.Start();
        memory.Write(3, 0, [1]);
        var dirty = new Ferry.Core.Paging.DirtyBitmap(memory.PageCount);
        Assert.Equal(1, log.GetAndClear(dirty));
        Assert.True(dirty[3]);
    }
}
