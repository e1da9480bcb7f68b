using Ferry.Core.Pacing;

namespace Ferry.Core.Machines.Source;

/// <summary>
/// Post-copy at the source: which kind of send comes next. Strict priority for demand — every page
/// request that has arrived is answered before another page is pushed — except that the push
/// steps aside only until demand has used a push batch's worth of the link since the last push:
/// light demand is answered at once, while faults that would fill the link share it about half
/// and half with the push (and its pre-paging), and answers cannot run the bandwidth limit into
/// unbounded debt. A fault thus waits for at most one pushed batch (<see cref="PushBatchPages"/>
/// pages), never for the pacing (bench/README.md: fault p50 1.09 → 0.08 ms at 64 MB/s).
/// Which pages go (the request queue, the pre-paging order) is the driver's, through
/// <see cref="Paging.PrePagingCursor"/>; this class counts them.
/// </summary>
internal sealed class PostCopyScheduler
{
    /// <summary>
    /// Pages per pushed batch (64 KiB). Small on purpose: a page request waits behind at most one
    /// pushed frame on this side of the socket, so demand stays fast.
    /// </summary>
    public const int PushBatchPages = 16;

    /// <summary>How often the link's delivery counter is read while the automatic pacing settles.</summary>
    public static readonly TimeSpan LinkSampleInterval = TimeSpan.FromMilliseconds(1);

    private int _requestsWaiting;
    private long _demandSincePush;
    private bool _pushTurn;
    private PostCopyAutoPacing? _autoPacing;
    private TimeSpan _nextLinkSample;

    public enum Step
    {
        Finished,
        SampleLink,
        AnswerDemand,
        Push,
        Wait,
    }

    public long PendingAtSwitchover { get; private set; }
    public long Remaining { get; private set; }
    public long DemandPages { get; private set; }
    public long PushPages { get; private set; }
    public long PrePagedPages { get; private set; }
    public long RequestsAlreadySent { get; private set; }
    public double AutoPacedBytesPerSecond { get; private set; }

    /// <summary>The delivery rate the current automatic pacing is based on (0: not paced automatically).</summary>
    public double MeasuredLinkBytesPerSecond { get; private set; }
    public bool Started { get; private set; }

    /// <summary>Page requests that arrived before or during post-copy and are not answered yet.</summary>
    public int RequestsWaiting => _requestsWaiting;

    public void SetPending(long pending) => PendingAtSwitchover = pending;

    /// <param name="autoPacing">No bandwidth limit and a link that can be measured: pace the push just below what it delivers.</param>
    public void Start(bool autoPacing)
    {
        Started = true;
        Remaining = PendingAtSwitchover;
        _autoPacing = autoPacing ? new PostCopyAutoPacing() : null;
    }

    public void RequestsArrived(int count) => _requestsWaiting += count;

    /// <summary>A new connection after a break: the old one's queued requests are gone (the destination repeats its open ones), and pages lost in flight are pending again.</summary>
    public void Reconnected(long pagesLost)
    {
        _requestsWaiting = 0;
        Remaining += pagesLost;
    }

    public void DemandAnswered(int taken, long sent, long alreadySent)
    {
        _requestsWaiting = Math.Max(0, _requestsWaiting - taken);
        Remaining -= sent;
        DemandPages += sent;
        RequestsAlreadySent += alreadySent;
        _demandSincePush += sent;
    }

    public void Pushed(long pages, long prePaged)
    {
        Remaining -= pages;
        PrePagedPages += prePaged;
        PushPages += pages - prePaged;
    }

    /// <summary>One reading of the link's delivery counter (null: none available now).</summary>
    public void LinkSampled(LinkDelivery? sample, TimeSpan now, SourcePacer pacer, int pushFrameBytes)
    {
        if (_autoPacing is null || sample is not { } s)
        {
            return;
        }
        if (_autoPacing.Observe(s, now.TotalSeconds) && _autoPacing.PacingBytesPerSecond is { } rate)
        {
            pacer.PaceAt(rate, pushFrameBytes, now);
            AutoPacedBytesPerSecond = rate;
            MeasuredLinkBytesPerSecond = _autoPacing.LinkBytesPerSecond;
        }
    }

    /// <summary>What to do next; with <see cref="Step.Wait"/>, until <paramref name="wakeAt"/> or (when demand may go first) the next page request.</summary>
    /// <param name="resolution">Debts at or below this go at once (see <see cref="SourceMachineSettings.TimerResolution"/>).</param>
    public Step Next(TimeSpan now, SourcePacer pacer, TimeSpan resolution, out TimeSpan wakeAt)
    {
        wakeAt = now;
        if (Remaining <= 0)
        {
            return Step.Finished;
        }
        if (_autoPacing is not null && now >= _nextLinkSample)
        {
            _nextLinkSample = now + LinkSampleInterval;
            return Step.SampleLink;
        }
        if (!_pushTurn && _requestsWaiting > 0)
        {
            return Step.AnswerDemand;
        }
        TimeSpan owed = pacer.Owed(now);
        if (owed <= resolution)
        {
            _pushTurn = false;
            _demandSincePush = 0;
            return Step.Push;
        }
        // Demand has had a push batch's worth since the last push: the push goes next, whatever arrives meanwhile.
        _pushTurn |= _demandSincePush >= PushBatchPages;
        wakeAt = now + owed;
        return Step.Wait;
    }
}
