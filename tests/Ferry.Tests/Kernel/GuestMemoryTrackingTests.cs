using Ferry.Core.Paging;
using Ferry.Tests.Support;
using Ferry.Vm.Memory;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Kernel;

/// <summary>How guest RAM and the dirty logs share it: one log at a time, and stopping a log leaves RAM as it was.</summary>
public sealed class GuestMemoryTrackingTests
{
    [LinuxFact(HostNeeds.KernelDirtyLog)]
    public void Only_one_dirty_log_may_watch_a_guest_at_a_time()
    {
        using var memory = new GuestMemory(1 << 20);
        using var software = new SoftwareDirtyLog(memory);
        software.Start();
        using var kernel = DirtyLogHarness.Create("kernel", memory);
        var ex = Assert.Throws<InvalidOperationException>(kernel.Start);
        Assert.Contains("already tracked by the Software dirty log", ex.Message);
        software.Stop();
        kernel.Start();
        Assert.Throws<InvalidOperationException>(software.Start);
        kernel.Stop();
        software.Start();
    }

    [LinuxFact(HostNeeds.KernelDirtyLog)]
    public void Stopping_the_kernel_log_unprotects_RAM_and_a_new_log_starts_clean()
    {
        using var memory = new GuestMemory(64 * PageSize.Bytes);
        var dirty = new DirtyBitmap(memory.PageCount);
        using (var first = DirtyLogHarness.Create("kernel", memory))
        {
            first.Start();
            memory.Write(5, 0, [5]);
            first.Stop();
        }
        // Unprotected now: these writes are plain stores, and no later log may report them.
        memory.Write(6, 0, [6]);
        memory.Write(5, 1, [5]);
        using var second = DirtyLogHarness.Create("kernel", memory);
        second.Start();
        Assert.Equal(0, second.GetAndClear(dirty));
        memory.Write(63, 0, [63]);
        Assert.Equal(1, second.GetAndClear(dirty));
        Assert.True(dirty[63]);
        Assert.Equal(5, memory.PageView(5)[0]);
        Assert.Equal(5, memory.PageView(5)[1]);
        Assert.Equal(6, memory.PageView(6)[0]);
    }
}
