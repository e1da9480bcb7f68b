using Ferry.Core.Paging;
using Ferry.Tests.Support;
using Ferry.Vm.Memory;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Kernel;

/// <summary>
/// A 4 GiB guest (beyond Span's 2 GiB, beyond int page offsets) with only a few pages touched:
/// registering, protecting and scanning cost page tables, not populated RAM, so this stays cheap.
/// </summary>
public sealed class LargeGuestTests
{
    private const long GuestBytes = 4L << 30;

    [LinuxFact(HostNeeds.KernelDirtyLog)]
    public void Kernel_log_tracks_a_4_GiB_guest_exactly()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // unreachable: LinuxFact skips elsewhere; the check satisfies the platform analyzer
        }
        using var memory = new GuestMemory(GuestBytes);
        long last = memory.PageCount - 1;
        memory.Write(7, 0, [1]);
        using var log = new KernelDirtyLog(memory);
        log.Start();
        var dirty = new DirtyBitmap(memory.PageCount);

        long[] written = [0, 1, 524_287, 524_288, 777_777, last];
        foreach (long p in written)
        {
            memory.Write(p, PageSize.Bytes - 8, BitConverter.GetBytes(p));
        }
        _ = memory.HashPage(7);
        Assert.Equal(written.Length, log.GetAndClear(dirty));
        Assert.Equal(written, DirtyLogHarness.Pages(dirty));

        Assert.Equal(0, log.GetAndClear(dirty));

        memory.Write(last, 0, [9]);
        Assert.Equal(1, log.GetAndClear(dirty));
        Assert.Equal([last], DirtyLogHarness.Pages(dirty));
        log.Stop();
        Assert.Equal(BitConverter.GetBytes(last), memory.PageView(last)[(PageSize.Bytes - 8)..].ToArray());
    }
}
