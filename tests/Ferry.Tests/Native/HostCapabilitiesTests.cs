using Ferry.Native.Linux;
using Ferry.Tests.Support;

namespace Ferry.Tests.Native;

public sealed class HostCapabilitiesTests
{
    [Fact]
    public void Probe_runs_once_and_describes_every_capability()
    {
        HostCapabilities caps = HostCapabilities.Current;
        Assert.Same(caps, HostCapabilities.Current);
        string text = caps.Describe();
        foreach (string line in new[] { "host:", "userfaultfd:", "PAGEMAP_SCAN:", "kernel dirty log:" })
        {
            Assert.Contains(line, text);
        }
        Assert.Equal(caps.KernelDirtyLogMissing is null, caps.KernelDirtyLogAvailable);
    }

    [LinuxFact(HostNeeds.KernelDirtyLog)]
    public void A_host_with_the_kernel_dirty_log_measured_its_fault_cost()
    {
        HostCapabilities caps = HostCapabilities.Current;
        Assert.True(caps.HasWriteProtect && caps.HasWpAsync && caps.HasWpUnpopulated && caps.PagemapScanWorks);
        Assert.NotNull(caps.WriteProtectFaultCost);
        Assert.Contains("write-protect fault:", caps.Describe());
    }

    [Fact]
    public void A_fake_host_without_userfaultfd_says_why()
    {
        var caps = new HostCapabilities { IsLinux = true, KernelRelease = "6.1", UserfaultfdError = "Operation not permitted (errno 1)" };
        Assert.Equal("no userfaultfd (Operation not permitted (errno 1))", caps.KernelDirtyLogMissing);
        Assert.Contains("userfaultfd:          no (Operation not permitted (errno 1))", caps.Describe());
        Assert.Contains("kernel dirty log:     unavailable: no userfaultfd", caps.Describe());
    }
}
