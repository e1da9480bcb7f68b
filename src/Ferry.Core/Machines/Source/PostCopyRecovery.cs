using System.Globalization;
using Ferry.Core.Migration;

namespace Ferry.Core.Machines.Source;

/// <summary>
/// A post-copy whose link broke: the destination's VM waits for its missing pages, so post-copy
/// pauses instead of failing. The source tries again with growing gaps (<see cref="ReconnectBackoff"/>)
/// for <see cref="MigrationOptions.PostCopyRecoveryTimeout"/>; then it waits for a resume request
/// (which starts another such window) or a cancel (which abandons the migration), keeping its
/// paused copy, until <see cref="MigrationOptions.PostCopyPauseLimit"/> — counted over every pause
/// of the migration together, so a link that keeps failing cannot hold the VM hostage forever.
/// </summary>
internal sealed class PostCopyRecovery
{
    public enum RecoveryStep
    {
        Attempt,
        Wait,
        GiveUp,
    }

    /// <summary>Reconnections after which a link is taken to be broken for good, however fast each one succeeded.</summary>
    public const int MaxRecoveries = 1000;

    private readonly MigrationOptions _options;
    private TimeSpan _brokeAt;
    private TimeSpan _windowEnd;
    private TimeSpan _pauseEnd;
    private int _attempt;

    public PostCopyRecovery(MigrationOptions options) => _options = options;

    public int Recoveries { get; private set; }
    public long PagesLost { get; private set; }

    /// <summary>All pauses together, on the source's clock.</summary>
    public TimeSpan PausedTotal { get; private set; }

    /// <summary>Why the link is down: the last error seen.</summary>
    public string LastError { get; private set; } = "";

    /// <summary>The automatic window is spent: only a resume request (or a cancel) moves things on.</summary>
    public bool AwaitingResume { get; private set; }

    /// <summary>The link broke. Null to start reconnecting, or the reason post-copy must fail instead.</summary>
    public string? Broke(string error, TimeSpan now)
    {
        if (Recoveries >= MaxRecoveries)
        {
            return string.Create(CultureInfo.InvariantCulture, $"the link broke {MaxRecoveries + 1} times after switchover; giving up on it: {error}");
        }
        _brokeAt = now;
        _pauseEnd = now + _options.PostCopyPauseLimit - PausedTotal;
        _windowEnd = Min(now + _options.PostCopyRecoveryTimeout, _pauseEnd);
        _attempt = 0;
        LastError = error;
        AwaitingResume = false;
        return null;
    }

    /// <summary>What to do now that the link is down: try, wait (until <paramref name="wakeAt"/>, or a resume request), or give up (<paramref name="gaveUp"/> says why).</summary>
    public RecoveryStep Next(TimeSpan now, out TimeSpan wakeAt, out string? gaveUp)
    {
        wakeAt = _pauseEnd;
        gaveUp = null;
        if (now >= _pauseEnd)
        {
            gaveUp = PauseLimitReached();
            return RecoveryStep.GiveUp;
        }
        if (now < _windowEnd)
        {
            AwaitingResume = false;
            return RecoveryStep.Attempt;
        }
        AwaitingResume = true;
        return RecoveryStep.Wait;
    }

    /// <summary>An attempt failed: the gap before the next one (never past the window's end).</summary>
    public TimeSpan AttemptFailed(string error, TimeSpan now)
    {
        LastError = error;
        return now + ReconnectBackoff.DelayWithin(_attempt++, _windowEnd - now);
    }

    /// <summary>A resume request: a fresh automatic window, starting now.</summary>
    public void ResumeRequested(TimeSpan now)
    {
        _windowEnd = Min(now + _options.PostCopyRecoveryTimeout, _pauseEnd);
        _attempt = 0;
        AwaitingResume = false;
    }

    public void Reconnected(long pagesLost, TimeSpan now)
    {
        Recoveries++;
        PagesLost += pagesLost;
        PausedTotal += now - _brokeAt;
        AwaitingResume = false;
    }

    /// <summary>The pause ends without a new link (failure or abandon): its time still counts.</summary>
    public void Ended(TimeSpan now) => PausedTotal += now - _brokeAt;

    /// <summary>What the progress display says while paused.</summary>
    public string Detail(TimeSpan now) => AwaitingResume
        ? string.Create(CultureInfo.InvariantCulture,
            $"link lost ({LastError}); automatic retries stopped after {_options.PostCopyRecoveryTimeout.TotalSeconds:0.###} s; waiting for a resume request, kept for {Math.Max(0, (_pauseEnd - now).TotalSeconds):0} s more")
        : string.Create(CultureInfo.InvariantCulture,
            $"link lost ({LastError}); reconnecting, attempt {_attempt + 1}, automatic retries for {Math.Max(0, (_windowEnd - now).TotalSeconds):0.#} s more");

    private string PauseLimitReached() => string.Create(CultureInfo.InvariantCulture,
        $"post-copy stayed paused for {_options.PostCopyPauseLimit.TotalSeconds:0.###} s (its pause limit) and the destination could not be reached again: {LastError}");

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}
