using System.Collections.Concurrent;
using System.Diagnostics;
using Ferry.Core.Paging;
using Ferry.Tests.Support;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Vm;

/// <summary>
/// The kernel post-copy path without a network: guest RAM registered with userfaultfd MISSING,
/// accesses as native copies, faults read by the resolver thread. The "source" here is the test,
/// installing pages the way the receiver does.
/// </summary>
public sealed class KernelPostCopyTests
{
    private const int Page = 4096;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    private static byte[] Filled(byte value)
    {
        byte[] page = new byte[Page];
        page.AsSpan().Fill(value);
        return page;
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void A_write_to_a_missing_page_faults_in_the_kernel_asks_once_and_lands_on_the_arrived_content()
    {
        using var m = new GuestMemory(16 * Page);
        m.EnableFastInstall();
        var requests = new ConcurrentQueue<long>();
        DirtyBitmap pending = PendingPages.Of(16, 3, 9);
        var pages = new PostCopyPages(pending, requests.Enqueue, TimeSpan.FromSeconds(10));
        m.BeginKernelPostCopy(pages, pending);
        Assert.True(m.KernelFaultsActive);

        var writer = new Thread(() => m.Write(3, 0, [0x11, 0x22]));
        writer.Start();
        Bounded.WaitUntil(() => requests.Count == 1, Bound, "the resolver asked for page 3");
        Thread.Sleep(20);
        Assert.True(writer.IsAlive);                     // blocked in the kernel: the page has not arrived
        Assert.True(requests.TryPeek(out long asked) && asked == 3);

        Assert.True(m.InstallArrivedPage(3, Filled(0xAB), zero: false));
        Assert.True(writer.Join(Bound), "the write never completed after UFFDIO_COPY");
        byte[] read = new byte[Page];
        Assert.True(m.ReadPage(3, read));
        Assert.Equal([0x11, 0x22, 0xAB, 0xAB], read[..4]);
        Assert.Equal(0xAB, read[^1]);
        Assert.Equal(1, pages.Latencies.Count);
        Assert.Single(requests);                          // asked once
        Assert.Equal(1, pages.Missing);                   // page 9 still at the source

        Assert.True(m.InstallArrivedPage(9, default, zero: true));
        Assert.False(m.InstallArrivedPage(9, Filled(1), zero: false));   // a duplicate changes nothing
        m.EndPostCopy();
        Assert.False(m.KernelFaultsActive);
        Assert.False(m.FastInstallActive);
        Assert.True(m.PageView(9).IndexOfAnyExcept((byte)0) < 0);
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void A_never_written_page_is_zero_filled_on_its_fault_without_asking_the_source()
    {
        using var m = new GuestMemory(16 * Page);
        m.EnableFastInstall();
        var requests = new ConcurrentQueue<long>();
        DirtyBitmap pending = PendingPages.Of(16, 3);
        var pages = new PostCopyPages(pending, requests.Enqueue, TimeSpan.FromSeconds(10));
        m.BeginKernelPostCopy(pages, pending);

        Bounded.Do(() => m.Write(7, 100, [0x42]), Bound, "a write to a never-written page");
        byte[] read = new byte[Page];
        Assert.True(m.ReadPage(7, read));
        Assert.Equal(0x42, read[100]);
        Assert.Equal(0, read[0]);
        Assert.Empty(requests);
        Assert.Equal(1, pages.ZeroFilledOnFault);
        Assert.Equal(0, pages.Latencies.Count);          // not a post-copy fault: nothing was waited for
        m.EndPostCopy();
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void A_stale_copy_from_a_live_round_is_never_read_an_access_waits_for_the_new_content()
    {
        using var m = new GuestMemory(16 * Page);
        m.EnableFastInstall();
        m.InstallPage(5, Filled(0x01));                  // round 1 sent pages 5 and 6 ...
        m.InstallPage(6, Filled(0x01));
        DirtyBitmap pending = PendingPages.Of(16, 5, 6);  // ... and the guest wrote them again before the pause
        var requests = new ConcurrentQueue<long>();
        var pages = new PostCopyPages(pending, requests.Enqueue, TimeSpan.FromSeconds(10));
        m.BeginKernelPostCopy(pages, pending);

        byte[] read = new byte[Page];
        var reader = new Thread(() => m.ReadPage(5, read));
        reader.Start();
        Bounded.WaitUntil(() => requests.Count == 1, Bound, "the read asked for page 5");
        Thread.Sleep(20);
        Assert.True(reader.IsAlive);                      // present in the kernel, yet it waits
        Assert.True(m.InstallArrivedPage(5, Filled(0x02), zero: false));
        Assert.True(reader.Join(Bound), "the read never completed");
        Assert.Equal(0x02, read[0]);                     // the new content, never the stale 0x01
        Assert.Equal(0x02, read[^1]);

        var writer = new Thread(() => m.Write(6, 10, [0x33]));
        writer.Start();
        Bounded.WaitUntil(() => requests.Count == 2, Bound, "the write asked for page 6");
        Assert.True(m.InstallArrivedPage(6, default, zero: true));   // page 6 is zero now at the source
        Assert.True(writer.Join(Bound), "the write never completed");
        Assert.True(m.ReadPage(6, read));
        Assert.Equal(0x33, read[10]);
        Assert.Equal(0, read[0]);                        // the stale 0x01 is gone under the zero page
        Assert.Equal(0, read[^1]);
        Assert.Equal(2, pages.Latencies.Count);
        m.EndPostCopy();
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void A_fault_whose_page_never_comes_fails_post_copy_after_the_wait_timeout_and_abandoning_frees_the_vcpu()
    {
        using var m = new GuestMemory(16 * Page);
        m.EnableFastInstall();
        DirtyBitmap pending = PendingPages.Of(16, 2);
        string? failure = null;
        var pages = new PostCopyPages(pending, _ => { }, TimeSpan.FromMilliseconds(200), reason => failure = reason);
        m.BeginKernelPostCopy(pages, pending);

        var writer = new Thread(() => m.Write(2, 0, [1]));
        writer.Start();
        Bounded.WaitUntil(() => pages.Failure is not null, Bound, "the resolver's timeout check");
        Assert.Contains("page 2 did not arrive within 0.2 s", pages.Failure);
        Bounded.WaitUntil(() => failure is not null, Bound, "the failure callback");
        Assert.True(writer.IsAlive);                      // still blocked in the kernel
        m.AbandonPostCopy();                              // unregisters: the fault retries as an ordinary one
        Assert.True(writer.Join(Bound), "abandoning post-copy did not free the blocked vCPU");
        Assert.False(m.KernelFaultsActive);
    }

    [LinuxFact(HostNeeds.Userfaultfd)]
    public void A_paused_post_copy_does_not_time_out_a_fault()
    {
        using var m = new GuestMemory(16 * Page);
        m.EnableFastInstall();
        DirtyBitmap pending = PendingPages.Of(16, 4);
        var requests = new ConcurrentQueue<long>();
        var pages = new PostCopyPages(pending, requests.Enqueue, TimeSpan.FromMilliseconds(200));
        m.BeginKernelPostCopy(pages, pending);
        pages.PauseWaitDeadlines();

        var writer = new Thread(() => m.Write(4, 0, [1]));
        writer.Start();
        Bounded.WaitUntil(() => requests.Count == 1, Bound, "the fault was read");
        var held = Stopwatch.StartNew();
        while (held.Elapsed < TimeSpan.FromMilliseconds(600))
        {
            Thread.Sleep(50);
            Assert.Null(pages.Failure);                   // three timeouts' worth of pause, no failure
        }
        pages.ResumeWaitDeadlines();
        Assert.True(m.InstallArrivedPage(4, Filled(9), zero: false));
        Assert.True(writer.Join(Bound));
        Assert.Null(pages.Failure);
        m.EndPostCopy();
    }
}
