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
        long deadline = start + _waitTimeoutTicks;
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
                    long now = Stopwatch.GetTimestamp();
                    long left = deadline + (PausedTicksLocked(now, start) - pausedBefore) - now;
                    if (left <= 0 && _pausedSince == 0)
                    {
                        string timeout = $"page {page} did not arrive within {WaitTimeout.TotalSeconds:0.###} s";
                        FailLocked(timeout);
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

    /// <summary>Receiver side, after the page's content is in place. Returns false for a page already present (a duplicate).</summary>
    public bool MarkPresent(long page)
    {
        if (!_present.TrySetAtomic(page))
        {
            return false;
        }
        Interlocked.Decrement(ref _missing);
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

    private void FailLocked(string reason)
    {
        if (_failure is not null)
        {
            return;
        }
        _failure = reason;
        Monitor.PulseAll(_gate);
        // Outside observers (the receiver) learn of it; they must not call back into a wait.
        ThreadPool.UnsafeQueueUserWorkItem(static s => s.Callback?.Invoke(s.Reason), (Callback: _onFailure, Reason: reason), preferLocal: false);
    }
}
