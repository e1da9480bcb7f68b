using System.Collections.Concurrent;
using Ferry.Core.Paging;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Vm;

/// <summary>The software post-copy path: a guest access to a page that has not arrived waits for it, bounded.</summary>
public sealed class PostCopyPagesTests
{
    private const int Page = 4096;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    [Fact]
    public void A_write_to_a_missing_page_asks_once_waits_and_lands_on_the_arrived_content()
    {
        using var m = new GuestMemory(8 * Page);
        var requests = new ConcurrentQueue<long>();
        var pages = new PostCopyPages(PendingPages.Of(8, 3), requests.Enqueue, TimeSpan.FromSeconds(10));
        m.BeginPostCopy(pages);
        Assert.False(pages.IsPresent(3));
        Assert.True(pages.IsPresent(2));

        var writer = new Thread(() => m.Write(3, 0, [0xAA]));
        writer.Start();
        Bounded.WaitUntil(() => requests.Count == 1, Bound, "the vCPU asked for page 3");
        Thread.Sleep(20);
        Assert.True(writer.IsAlive);              // still waiting: the page has not arrived

        byte[] arrived = new byte[Page];
        Array.Fill(arrived, (byte)0x11);
        Assert.True(m.InstallArrivedPage(3, arrived, zero: false));
        Assert.True(writer.Join(Bound));
        Assert.Equal([3L], requests.ToArray());
        Assert.Equal(0xAA, m.PageView(3)[0]);     // the guest's write
        Assert.Equal(0x11, m.PageView(3)[1]);     // the rest came from the source
        Assert.Equal(1, pages.Latencies.Count);
        Assert.Equal(0, pages.Missing);
    }

    [Fact]
    public void Present_pages_never_wait_and_a_duplicate_never_overwrites_guest_data()
    {
        using var m = new GuestMemory(4 * Page);
        var pages = new PostCopyPages(PendingPages.Of(4, 1), _ => Assert.Fail("no request expected"), TimeSpan.FromSeconds(10));
        m.BeginPostCopy(pages);
        m.Write(0, 0, [1, 2, 3]);                  // never written at the source: zero here, present
        Assert.True(m.InstallArrivedPage(1, new byte[Page], zero: true));
        m.Write(1, 0, [9]);
        Assert.False(m.InstallArrivedPage(1, new byte[Page], zero: false));
        Assert.Equal(9, m.PageView(1)[0]);
        Assert.Equal(0, pages.Latencies.Count);
    }

    [Fact]
    public void A_page_that_never_arrives_ends_the_wait_after_the_timeout_and_reports_it()
    {
        using var m = new GuestMemory(4 * Page);
        string? reported = null;
        var pages = new PostCopyPages(PendingPages.Of(4, 2), _ => { }, TimeSpan.FromMilliseconds(200), r => reported = r);
        m.BeginPostCopy(pages);
        Exception? ex = Bounded.Catch(() => m.Write(2, 0, [1]), Bound, "a write to a page that never comes");
        var unavailable = Assert.IsType<GuestPageUnavailableException>(ex);
        Assert.Equal(2, unavailable.Page);
        Assert.Contains("did not arrive within 0.2 s", unavailable.Message);
        Bounded.WaitUntil(() => reported is not null, Bound, "the failure was reported");
        // Every later access to a missing page fails at once with the same reason.
        Assert.IsType<GuestPageUnavailableException>(Bounded.Catch(() => m.Write(2, 0, [1]), Bound, "a second write"));
    }

    [Fact]
    public void While_waits_are_paused_a_missing_page_never_times_out_and_the_page_still_lands()
    {
        using var m = new GuestMemory(4 * Page);
        var pages = new PostCopyPages(PendingPages.Of(4, 2), _ => { }, TimeSpan.FromMilliseconds(100));
        m.BeginPostCopy(pages);
        pages.PauseWaitDeadlines();
        Assert.True(pages.WaitDeadlinesPaused);
        Exception? error = null;
        var vcpu = new Thread(() => error = Bounded.Catch(() => m.Write(2, 0, [7]), Bound, "a write while the link is down"));
        vcpu.Start();
        Bounded.WaitUntil(() => pages.WasRequested(2), Bound, "the vCPU asked for page 2");
        // Several page timeouts pass while paused: the link is down, which is not the page's fault.
        Thread.Sleep(400);
        Assert.True(vcpu.IsAlive);
        Assert.Null(pages.Failure);

        pages.ResumeWaitDeadlines();
        Assert.True(m.InstallArrivedPage(2, new byte[Page], zero: true));
        Assert.True(vcpu.Join(Bound));
        Assert.Null(error);
        Assert.Equal(7, m.PageView(2)[0]);
        Assert.False(pages.WaitDeadlinesPaused);
    }

    [Fact]
    public void After_the_pause_the_page_timeout_counts_again()
    {
        using var m = new GuestMemory(4 * Page);
        var pages = new PostCopyPages(PendingPages.Of(4, 1), _ => { }, TimeSpan.FromMilliseconds(150));
        m.BeginPostCopy(pages);
        pages.PauseWaitDeadlines();
        Exception? error = null;
        var vcpu = new Thread(() => error = Bounded.Catch(() => m.ReadPage(1, new byte[Page]), Bound, "a read while the link is down"));
        vcpu.Start();
        Bounded.WaitUntil(() => pages.WasRequested(1), Bound, "the vCPU asked for page 1");
        Thread.Sleep(300);
        Assert.True(vcpu.IsAlive);
        pages.ResumeWaitDeadlines();
        // The page never comes: the wait ends with the usual timeout once deadlines run again.
        Assert.True(vcpu.Join(Bound));
        Assert.Contains("did not arrive within 0.15 s", Assert.IsType<GuestPageUnavailableException>(error).Message);
    }

    [Fact]
    public void A_failed_link_wakes_every_waiting_vcpu_with_the_reason()
    {
        using var m = new GuestMemory(4 * Page);
        var pages = new PostCopyPages(PendingPages.Of(4, 0, 1), _ => { }, TimeSpan.FromSeconds(30));
        m.BeginPostCopy(pages);
        Exception? ea = null, eb = null;
        var a = new Thread(() => ea = Bounded.Catch(() => m.Write(0, 0, [1]), Bound, "vCPU a"));
        var b = new Thread(() => eb = Bounded.Catch(() => m.Write(1, 0, [1]), Bound, "vCPU b"));
        a.Start();
        b.Start();
        Bounded.WaitUntil(() => pages.WasRequested(0) && pages.WasRequested(1), Bound, "both vCPUs asked");
        pages.Fail("connection to source lost");
        Assert.True(a.Join(Bound) && b.Join(Bound));
        Assert.Contains("connection to source lost", Assert.IsType<GuestPageUnavailableException>(ea).Message);
        Assert.Contains("connection to source lost", Assert.IsType<GuestPageUnavailableException>(eb).Message);
    }

    [Fact]
    public void A_request_that_cannot_be_sent_fails_post_copy_at_once()
    {
        using var m = new GuestMemory(4 * Page);
        var pages = new PostCopyPages(PendingPages.Of(4, 0), _ => throw new IOException("broken pipe"), TimeSpan.FromSeconds(30));
        m.BeginPostCopy(pages);
        Exception? ex = Bounded.Catch(() => m.Write(0, 0, [1]), Bound, "a write whose request fails");
        Assert.Contains("broken pipe", Assert.IsType<GuestPageUnavailableException>(ex).Message);
    }

    [Fact]
    public void A_vm_whose_vcpu_loses_a_page_records_why_and_still_stops()
    {
        var config = new VmConfig { Id = "pc", MemoryBytes = 64 * Page, Vcpus = 2, Workload = "memtouch:rate=0,wss=256KiB,seed=1" };
        using var source = VirtualMachine.Create(config);
        var memory = new GuestMemory(config.MemoryBytes);
        var pending = new DirtyBitmap(memory.PageCount);
        pending.SetAll();
        memory.BeginPostCopy(new PostCopyPages(pending, _ => { }, TimeSpan.FromMilliseconds(100)));
        using var vm = VirtualMachine.Restore(config, memory, source.SnapshotVcpus());
        vm.Start();
        Bounded.WaitUntil(() => vm.Failure is not null, Bound, "the vCPUs gave up on their pages");
        Assert.False(vm.WaitFinished(TimeSpan.FromSeconds(1)));
        Bounded.Do(vm.Stop, Bound, "stopping a VM whose vCPUs failed");
        Assert.IsType<GuestPageUnavailableException>(vm.Failure);
    }

    [Fact]
    public void Fault_latency_percentiles_are_nearest_rank()
    {
        var r = new FaultLatencyRecorder(capacity: 1000);
        long ms = System.Diagnostics.Stopwatch.Frequency / 1000;
        for (int i = 1; i <= 100; i++)
        {
            r.Record(i * ms);
        }
        var (p50, p99, max) = r.Summarize();
        Assert.Equal(50, p50, 3);
        Assert.Equal(99, p99, 3);
        Assert.Equal(100, max, 3);
        Assert.Equal((0.0, 0.0, 0.0), new FaultLatencyRecorder(4).Summarize());
    }
}
