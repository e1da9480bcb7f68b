using System.Diagnostics;
using Ferry.Core.Paging;

namespace Ferry.Vm.Memory;

/// <summary>
/// The software post-copy path: which pages of a VM already running at the destination have
/// arrived, and the wait a vCPU does on one that has not. A guest access to a missing page sends
/// one request for it (the first toucher asks; later ones only wait) and blocks the vCPU thread
/// until the receiver installs the page, the migration fails, or the wait times out. Waiting is
/// plain managed blocking on a monitor (the predicate is the page's present bit), so a GC can
/// always suspend a waiting vCPU: the userfaultfd GC deadlock (kernel.md, Probe 2) cannot occur.
/// </summary>
public sealed class PostCopyPages
{
    private static readonly TimeSpan WakeCheck = TimeSpan.FromMilliseconds(100);

    private readonly DirtyBitmap _present;
    private readonly DirtyBitmap _requested;
    private readonly Action<long> _request;
    private readonly Action<string>? _onFailure;
    private readonly object _gate = new();
    private readonly long _waitTimeoutTicks;
    private int _waiters;
    // Kernel path: faults read from the userfaultfd whose page has not arrived. At most one per
    // blocked vCPU thread, so a short list under a lock is enough.
    private readonly List<(long Page, long Start, long PausedAtStart)> _kernelFaults = [];
    private int _kernelFaultCount;
    private long _missing;
    private volatile string? _failure;

    // While the link to the source is down, page waits stop counting toward their timeout (guarded by _gate).
    private long _pausedTicks;
    private long _pausedSince;

    /// <param name="pending">Pages still at the source; every other page is present from the start.</param>
    /// <param name="request">Asks the source for a page; called on the faulting vCPU's thread, at most once per page. May throw when the link is gone.</param>
    /// <param name="waitTimeout">Longest a vCPU waits for one page before the migration fails.</param>
    /// <param name="onFailure">Told once, with the reason, when post-copy fails from the vCPU side (timeout or a request that could not be sent).</param>
    public PostCopyPages(DirtyBitmap pending, Action<long> request, TimeSpan waitTimeout, Action<string>? onFailure = null)
    {
        if (waitTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(waitTimeout), "page wait timeout must be positive");
        }
        _present = new DirtyBitmap(pending.PageCount);
        _present.SetAll();
        foreach (long p in pending)
        {
            _present.Clear(p);
        }
        _missing = pending.Count();
        _requested = new DirtyBitmap(pending.PageCount);
        _request = request;
        _onFailure = onFailure;
        WaitTimeout = waitTimeout;
        _waitTimeoutTicks = (long)(waitTimeout.TotalSeconds * Stopwatch.Frequency);
    }

    public TimeSpan WaitTimeout { get; }

    public FaultLatencyRecorder Latencies { get; } = new();

    /// <summary>Pages not yet arrived.</summary>
    public long Missing => Interlocked.Read(ref _missing);

    /// <summary>Why post-copy failed, or null.</summary>
    public string? Failure => _failure;

    /// <summary>True when the failure was a page wait that ran out (not a request that could not be sent).</summary>
    public bool FailedByTimeout { get; private set; }

    public bool IsPresent(long page) => _present[page];

    /// <summary>True when this page has been asked for (by a vCPU fault).</summary>
    public bool WasRequested(long page) => _requested[page];

    /// <summary>Words of the missing-pages bitmap (the complement of the present bits), for telling a reconnected source what to send again.</summary>
    public void CopyMissingWords(int firstWord, Span<ulong> target)
    {
        _present.CopyWordsTo(firstWord, target);
        for (int i = 0; i < target.Length; i++)
        {
            target[i] = ~target[i];
        }
        int tail = (int)(_present.PageCount & 63);
        if (tail != 0 && firstWord + target.Length == _present.WordCount)
        {
            target[^1] &= (1UL << tail) - 1;
        }
    }

    /// <summary>Pages a vCPU asked for that have not arrived: their requests are sent again on a new connection.</summary>
    public IEnumerable<long> RequestedButMissing()
    {
        foreach (long p in _requested)
        {
            if (!_present[p])
            {
                yield return p;
            }
        }
    }

    /// <summary>True while page waits do not count toward their timeout (<see cref="PauseWaitDeadlines"/>).</summary>
    public bool WaitDeadlinesPaused
    {
        get
        {
            lock (_gate)
            {
                return _pausedSince != 0;
            }
        }
    }

    /// <summary>
    /// The link to the source is down and the receiver waits for it to return: a page that cannot
    /// arrive now is no reason to fail the VM, so waits keep waiting and their timeout stops counting
    /// until <see cref="ResumeWaitDeadlines"/>. The receiver's own limit bounds the pause.
    /// </summary>
    public void PauseWaitDeadlines()
    {
        lock (_gate)
        {
            if (_pausedSince == 0)
            {
                _pausedSince = Math.Max(1, Stopwatch.GetTimestamp());
            }
        }
    }

    /// <summary>Pages can arrive again: waits resume counting toward their timeout where they left off.</summary>
    public void ResumeWaitDeadlines()
    {
        lock (_gate)
        {
            if (_pausedSince != 0)
            {
                _pausedTicks += Stopwatch.GetTimestamp() - _pausedSince;
                _pausedSince = 0;
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Paused time up to <paramref name="at"/> (a timestamp); only a pause's part after <paramref name="notBefore"/> counts for the current one.</summary>
    private long PausedTicksLocked(long at, long notBefore) =>
        _pausedTicks + (_pausedSince == 0 ? 0 : Math.Max(0, at - Math.Max(_pausedSince, notBefore)));

    /// <summary>How long a wait that began at <paramref name="start"/> (when <see cref="PausedTicksLocked"/> read <paramref name="pausedAtStart"/>) has counted toward its timeout by <paramref name="now"/>: paused time does not count.</summary>
    private long WaitedTicksLocked(long start, long pausedAtStart, long now) =>
        now - start - (PausedTicksLocked(now, start) - pausedAtStart);

    /// <summary>Blocks the calling vCPU until the page is present. Throws <see cref="GuestPageUnavailableException"/> when it never will be.</summary>
    public void WaitUntilPresent(long page)
    {
        long start = Stopwatch.GetTimestamp();
        if (_failure is { } already)
        {
            throw new GuestPageUnavailableException(page, already);
        }
        if (_requested.TrySetAtomic(page))
        {
            try
            {
                _request(page);
            }
            catch (Exception ex)
            {
                Fail($"could not ask the source for page {page}: {ex.Message}");
            }
        }
        lock (_gate)
        {
            // A full fence before reading the present bit, paired with the one in MarkPresent: either
            // the installer sees a waiter and pulses, or this thread sees the page present.
            Interlocked.Increment(ref _waiters);
            long pausedBefore = PausedTicksLocked(start, start);
            try
            {
                while (!_present[page])
                {
                    if (_failure is { } reason)
                    {
                        throw new GuestPageUnavailableException(page, reason);
                    }
                    long left = _waitTimeoutTicks - WaitedTicksLocked(start, pausedBefore, Stopwatch.GetTimestamp());
                    if (left <= 0 && _pausedSince == 0)
                    {
                        string timeout = $"page {page} did not arrive within {WaitTimeout.TotalSeconds:0.###} s";
                        FailLocked(timeout, timedOut: true);
                        throw new GuestPageUnavailableException(page, timeout);
                    }
                    double slice = _pausedSince != 0 ? WakeCheck.TotalSeconds : Math.Min(WakeCheck.TotalSeconds, left / (double)Stopwatch.Frequency);
                    Monitor.Wait(_gate, TimeSpan.FromSeconds(slice));
                }
            }
            finally
            {
                Interlocked.Decrement(ref _waiters);
            }
        }
        Latencies.Record(Stopwatch.GetTimestamp() - start);
    }

    /// <summary>
    /// Kernel path (<see cref="UserfaultFaultResolver"/>): a guest access to <paramref name="page"/>
    /// faulted in the kernel at <paramref name="timestamp"/>. Asks the source for the page (once)
    /// and remembers the fault until the page is installed. Returns false when the page turns out
    /// to be present already (installed while the fault was queued): the caller wakes the thread.
    /// </summary>
    internal bool BeginKernelFault(long page, long timestamp)
    {
        long pausedAtStart;
        lock (_gate)
        {
            pausedAtStart = _pausedTicks;
        }
        lock (_kernelFaults)
        {
            _kernelFaults.Add((page, timestamp, pausedAtStart));
            Volatile.Write(ref _kernelFaultCount, _kernelFaults.Count);
        }
        // Store (the entry) then load (the present bit), against MarkPresent's store then load: a
        // full fence on each side means at least one of the two sees the other, so no fault is orphaned.
        Interlocked.MemoryBarrier();
        if (_present[page])
        {
            EndKernelFaults(page);
            return false;
        }
        if (_requested.TrySetAtomic(page))
        {
            try
            {
                _request(page);
            }
            catch (Exception ex)
            {
                Fail($"could not ask the source for page {page}: {ex.Message}");
            }
        }
        return true;
    }

    /// <summary>
    /// Kernel path: fails post-copy when a faulting vCPU has waited longer than
    /// <see cref="WaitTimeout"/>, not counting time post-copy was paused (as for software waits).
    /// </summary>
    internal void CheckKernelFaultTimeouts(long now)
    {
        if (Volatile.Read(ref _kernelFaultCount) == 0)
        {
            return;
        }
        long late = -1;
        lock (_gate)
        {
            if (_pausedSince != 0)
            {
                return;
            }
            lock (_kernelFaults)
            {
                foreach (var (page, start, pausedAtStart) in _kernelFaults)
                {
                    if (WaitedTicksLocked(start, pausedAtStart, now) > _waitTimeoutTicks)
                    {
                        late = page;
                        break;
                    }
                }
            }
        }
        if (late >= 0)
        {
            lock (_gate)
            {
                FailLocked($"page {late} did not arrive within {WaitTimeout.TotalSeconds:0.###} s", timedOut: true);
            }
        }
    }

    /// <summary>Kernel path: faults on never-written pages the resolver zero-filled locally, asking nobody.</summary>
    public long ZeroFilledOnFault => Interlocked.Read(ref _zeroFilledOnFault);

    private long _zeroFilledOnFault;

    internal void CountZeroFillOnFault() => Interlocked.Increment(ref _zeroFilledOnFault);

    private void EndKernelFaults(long page)
    {
        long now = Stopwatch.GetTimestamp();
        lock (_kernelFaults)
        {
            for (int i = _kernelFaults.Count - 1; i >= 0; i--)
            {
                if (_kernelFaults[i].Page == page)
                {
                    Latencies.Record(now - _kernelFaults[i].Start);
                    _kernelFaults.RemoveAt(i);
                }
            }
            Volatile.Write(ref _kernelFaultCount, _kernelFaults.Count);
        }
    }

    /// <summary>Receiver side, after the page's content is in place. Returns false for a page already present (a duplicate).</summary>
    public bool MarkPresent(long page)
    {
        if (!_present.TrySetAtomic(page))
        {
            return false;
        }
        Interlocked.Decrement(ref _missing);
        if (Volatile.Read(ref _kernelFaultCount) > 0)
        {
            EndKernelFaults(page);
        }
        if (Volatile.Read(ref _waiters) > 0)
        {
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        }
        return true;
    }

    /// <summary>Ends every current and future wait with <paramref name="reason"/> (the first reason wins).</summary>
    public void Fail(string reason)
    {
        lock (_gate)
        {
            FailLocked(reason);
        }
    }

    private void FailLocked(string reason, bool timedOut = false)
    {
        if (_failure is not null)
        {
            return;
        }
        FailedByTimeout = timedOut;
        _failure = reason;
        Monitor.PulseAll(_gate);
        // Outside observers (the receiver) learn of it; they must not call back into a wait.
        ThreadPool.UnsafeQueueUserWorkItem(static s => s.Callback?.Invoke(s.Reason), (Callback: _onFailure, Reason: reason), preferLocal: false);
    }
}
