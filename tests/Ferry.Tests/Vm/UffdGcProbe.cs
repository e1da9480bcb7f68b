using System.Diagnostics;
using Ferry.Core.Paging;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Vm;

/// <summary>
/// kernel.md's Probe 2, replayed on Ferry's kernel post-copy path: a "vCPU" thread writes to a
/// page that has not arrived, its page is delivered by managed code one second later, and the
/// main thread forces a garbage collection meanwhile. Mode <c>native</c> writes the way guest
/// programs do (<see cref="GuestMemory.Write"/>, a native copy): the GC must finish and the
/// write land. Mode <c>managed</c> stores into the page from managed code — what the design
/// rules out — and is expected to hang for good; it is the control that shows the harness can
/// see the deadlock at all. Prints "ok gc-ms=N gc-during-fault=True faults=1" and exits 0 on success.
/// </summary>
internal static class UffdGcProbe
{
    public const string Verb = "uffd-gc-probe";
    private const long Page = 5;

    /// <summary>
    /// One store, in a small method without loops: the JIT makes it partially interruptible, so
    /// the faulting instruction is not a GC safe point and the runtime cannot suspend the thread
    /// there (a store inside a fully interruptible loop can be suspended, and would not hang).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void ManagedStore(Span<byte> target)
    {
        target[1] = 7;
        target[0] = 7;
        target[2] = 7;
    }

    public static int Run(string mode)
    {
        if (!OperatingSystem.IsLinux())
        {
            Console.WriteLine("skip: not Linux");
            return 3;
        }
        using var memory = new GuestMemory(64 * PageSize.Bytes);
        memory.EnableFastInstall();
        var pending = new DirtyBitmap(memory.PageCount);
        pending.SetAll();
        var requested = new System.Collections.Concurrent.BlockingCollection<long>();
        var pages = new PostCopyPages(pending, requested.Add, TimeSpan.FromSeconds(60));
        memory.BeginKernelPostCopy(pages, pending);

        // The "source": managed code in this process that answers one second after being asked.
        var source = new Thread(() =>
        {
            long page = requested.Take();
            Thread.Sleep(1000);
            byte[] content = new byte[PageSize.Bytes];
            content.AsSpan().Fill(0xAB);
            memory.InstallArrivedPage(page, content, zero: false);
        }) { IsBackground = true };
        source.Start();

        var vcpu = new Thread(() =>
        {
            if (mode == "managed")
            {
                ManagedStore(memory.Mapping.GetSpan(Page << PageSize.Shift, 3));
            }
            else
            {
                memory.Write(Page, 0, [7, 7, 7]);
            }
        }) { IsBackground = true };
        vcpu.Start();

        // Let the write reach the fault (the request arrives when it has).
        for (int i = 0; i < 500 && pages.Latencies.Count == 0 && !pages.WasRequested(Page); i++)
        {
            Thread.Sleep(10);
        }
        Thread.Sleep(100);
        long t0 = Stopwatch.GetTimestamp();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true);
        double gcMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        // The page is due a second after the request: the GC must have finished while the write waited.
        bool overlapped = vcpu.IsAlive;
        if (!vcpu.Join(TimeSpan.FromSeconds(20)))
        {
            Console.WriteLine("fail: the write never completed");
            return 1;
        }
        source.Join(TimeSpan.FromSeconds(20));
        byte[] page = new byte[PageSize.Bytes];
        memory.ReadPage(Page, page);
        if (page[0] != 7 || page[2] != 7 || page[3] != 0xAB || page[^1] != 0xAB)
        {
            Console.WriteLine($"fail: page holds {page[0]:x2} {page[2]:x2} {page[3]:x2} {page[^1]:x2}, expected 07 07 ab ab");
            return 1;
        }
        Console.WriteLine($"ok gc-ms={gcMs:0.0} gc-during-fault={overlapped} faults={pages.Latencies.Count}");
        return 0;
    }
}
