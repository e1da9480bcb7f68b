using System.Diagnostics;
using System.Runtime.Versioning;
using Ferry.Core.Paging;
using Ferry.Native;
using Ferry.Native.Linux;

namespace Ferry.Vm.Memory;

/// <summary>
/// The kernel post-copy path's fault handler. Guest RAM stays registered with userfaultfd in
/// MISSING mode while the VM runs at the destination, so a guest access to a page that is not
/// there traps in the kernel and this thread reads the fault: a page still at the source is
/// requested (the receiver's UFFDIO_COPY of the arriving page wakes the vCPU), a page the guest
/// never wrote is mapped to the zero page on the spot (UFFDIO_ZEROPAGE), and a page installed
/// while its fault was queued only needs a wake.
///
/// This thread is managed code resolving faults of the same process, which kernel.md (Probe 2)
/// shows can deadlock with the GC. It cannot here because no managed frame ever faults on the
/// range: guest accesses go through <see cref="AnonymousMapping.NativeWrite"/> and
/// <see cref="AnonymousMapping.NativeRead"/>, P/Invokes during which the faulting thread is in
/// preemptive mode and a GC does not wait for it (rule c). tests/Ferry.Tests/Vm/UffdGcProbeTests
/// runs both arms of that argument in a child process.
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed class UserfaultFaultResolver
{
    private const int PollMilliseconds = 50;

    private readonly AnonymousMapping _mapping;
    private readonly Userfaultfd _fd;
    private readonly PostCopyPages _pages;
    private readonly Thread _thread;
    private volatile bool _stop;

    public UserfaultFaultResolver(AnonymousMapping mapping, Userfaultfd fd, PostCopyPages pages)
    {
        _mapping = mapping;
        _fd = fd;
        _pages = pages;
        _thread = new Thread(Run) { IsBackground = true, Name = "ferry-uffd-resolver" };
    }

    public void Start() => _thread.Start();

    /// <summary>Ends the loop (within one poll interval) and waits for it. Faults still queued stay blocked until the range is unregistered.</summary>
    public void Stop()
    {
        _stop = true;
        if (_thread.IsAlive && _thread != Thread.CurrentThread)
        {
            _thread.Join(TimeSpan.FromSeconds(10));
        }
    }

    private void Run()
    {
        Span<long> offsets = stackalloc long[16];
        try
        {
            while (!_stop)
            {
                if (_fd.WaitReadable(PollMilliseconds))
                {
                    int n = _fd.ReadPageFaults(_mapping, offsets);
                    long now = Stopwatch.GetTimestamp();
                    for (int i = 0; i < n; i++)
                    {
                        Resolve(offsets[i] >> PageSize.Shift, now);
                    }
                }
                _pages.CheckKernelFaultTimeouts(Stopwatch.GetTimestamp());
            }
        }
        catch (Exception ex)
        {
            // A resolver that stops would leave vCPUs blocked for good; failing post-copy stops the VM instead.
            _pages.Fail($"userfaultfd fault resolver failed: {ex.Message}");
        }
    }

    private void Resolve(long page, long now)
    {
        long offset = page << PageSize.Shift;
        if (!_pages.IsPresent(page))
        {
            if (_pages.BeginKernelFault(page, now))
            {
                return;
            }
            _fd.Wake(_mapping, offset, PageSize.Bytes);
            return;
        }
        // Present as far as post-copy is concerned: either the guest never wrote it at the source
        // (nothing to fetch: zero it here) or it was installed after the fault was queued (EEXIST).
        if (_fd.ZeroPage(_mapping, offset, PageSize.Bytes))
        {
            _pages.CountZeroFillOnFault();
        }
        else
        {
            _fd.Wake(_mapping, offset, PageSize.Bytes);
        }
    }
}
