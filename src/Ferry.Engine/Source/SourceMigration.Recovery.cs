using System.Diagnostics;
using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;

namespace Ferry.Engine.Source;

public sealed partial class SourceMigration
{
    /// <summary>Reconnections after which a link is taken to be broken for good, however fast each one succeeded.</summary>
    private const int MaxRecoveries = 1000;

    /// <summary>Longest single wait while paused, so progress (elapsed time, what it waits for) stays fresh.</summary>
    private static readonly TimeSpan PausedTick = TimeSpan.FromSeconds(1);

    /// <summary>Capacity 1: resume requests that arrive together start one new series of attempts, not several.</summary>
    private readonly SemaphoreSlim _resumeRequested = new(0, 1);
    private volatile bool _postCopyPaused;
    private volatile string? _pauseDetail;
    private volatile bool _awaitingResume;

    /// <summary>The caller's token: after switchover it is honoured only while post-copy is paused, where it abandons the migration.</summary>
    private CancellationToken _abandon;

    /// <summary>True while post-copy is paused: the link broke after switchover and has not been re-established.</summary>
    public bool IsPostCopyPaused => _postCopyPaused;

    /// <summary>
    /// Asks a paused post-copy to try reaching the destination again now, with a fresh automatic
    /// window (<see cref="MigrationOptions.PostCopyRecoveryTimeout"/>). False when post-copy is not
    /// paused (nothing to resume); safe from any thread.
    /// </summary>
    public bool RequestResume()
    {
        if (!_postCopyPaused)
        {
            return false;
        }
        try
        {
            _resumeRequested.Release();
        }
        catch (SemaphoreFullException)
        {
            // A request is already waiting to be taken; one is enough.
        }
        return true;
    }

    /// <summary>
    /// The link broke after switchover: the destination's VM waits for its missing pages, so post-copy
    /// pauses instead of failing. The source tries to reach the destination again with growing gaps
    /// (<see cref="ReconnectBackoff"/>) for <see cref="MigrationOptions.PostCopyRecoveryTimeout"/>; then it
    /// waits for a resume request (which starts another such window) or a cancel (which abandons the
    /// migration), keeping its paused copy, until <see cref="MigrationOptions.PostCopyPauseLimit"/> after
    /// the break. On a new connection the destination says which pages it still lacks; pages that were
    /// sent but lost in flight become pending again, and the push restarts from page 0. The pause
    /// limit counts all pauses of the migration together.
    /// </summary>
    private ReturnPath Reconnect(RunContext ctx, DirtyBitmap pending, Exception broken)
    {
        if (ctx.Recoveries >= MaxRecoveries)
        {
            throw new MigrationFailedException(MigrationFailure.PeerDisconnected,
                $"the link broke {MaxRecoveries + 1} times after switchover; giving up on it: {broken.Message}");
        }
        long brokeAt = Stopwatch.GetTimestamp();
        // The limit covers every pause of this migration together, so a link that keeps failing cannot hold the VM hostage forever.
        long pauseEnd = brokeAt + Ticks(_options.PostCopyPauseLimit) - ctx.PausedTicks;
        Exception last = broken;
        // A request made while the link was still up has nothing to resume (capacity 1: one Wait drains it).
        _resumeRequested.Wait(0);
        _postCopyPaused = true;
        try
        {
            long windowEnd = Math.Min(brokeAt + Ticks(_options.PostCopyRecoveryTimeout), pauseEnd);
            int attempt = 0;
            while (true)
            {
                long now = Stopwatch.GetTimestamp();
                if (now >= pauseEnd)
                {
                    throw new MigrationFailedException(MigrationFailure.PeerDisconnected,
                        $"post-copy stayed paused for {_options.PostCopyPauseLimit.TotalSeconds:0.###} s (its pause limit) and the destination could not be reached again: {last.Message}");
                }
                bool resumed;
                if (now < windowEnd)
                {
                    _awaitingResume = false;
                    _pauseDetail = $"link lost ({last.Message}); reconnecting, attempt {attempt + 1}, automatic retries for {Seconds(now, windowEnd):0.#} s more";
                    SetPhase("post-copy paused");
                    if (TryReconnectOnce(ctx, pending, ref last) is { } link)
                    {
                        return link;
                    }
                    TimeSpan gap = ReconnectBackoff.DelayWithin(attempt++, TimeSpan.FromSeconds(Seconds(Stopwatch.GetTimestamp(), windowEnd)));
                    resumed = WaitForResumeRequest(gap, ctx);
                }
                else
                {
                    _awaitingResume = true;
                    _pauseDetail = $"link lost ({last.Message}); automatic retries stopped after {_options.PostCopyRecoveryTimeout.TotalSeconds:0.###} s; " +
                        $"waiting for a resume request, kept for {Seconds(now, pauseEnd):0} s more";
                    SetPhase("post-copy paused");
                    resumed = WaitForResumeRequest(TimeSpan.FromSeconds(Seconds(now, pauseEnd)), ctx);
                }
                if (resumed)
                {
                    windowEnd = Math.Min(Stopwatch.GetTimestamp() + Ticks(_options.PostCopyRecoveryTimeout), pauseEnd);
                    attempt = 0;
                }
            }
        }
        finally
        {
            _postCopyPaused = false;
            _awaitingResume = false;
            _pauseDetail = null;
            ctx.PausedTicks += Stopwatch.GetTimestamp() - brokeAt;
        }
    }

    /// <summary>Waits up to <paramref name="timeout"/> (in short slices) for a resume request; a cancel abandons the paused migration.</summary>
    private bool WaitForResumeRequest(TimeSpan timeout, RunContext ctx)
    {
        try
        {
            return _resumeRequested.Wait(timeout < PausedTick ? timeout : PausedTick, _abandon);
        }
        catch (OperationCanceledException)
        {
            throw Abandoned(ctx);
        }
    }

    private MigrationFailedException Abandoned(RunContext ctx) => new(MigrationFailure.Aborted,
        $"post-copy abandoned by request while paused; the destination's VM still lacks {ctx.Remaining} pages " +
        "and stops when the destination's own pause limit passes");

    /// <summary>
    /// One attempt: a new connection, PostCopyResume, then the destination's map of what it still
    /// lacks. Null (with <paramref name="last"/> set) when the link is not back yet; throws when
    /// retrying cannot help (the destination answered but refuses or breaks the protocol) or on a cancel.
    /// </summary>
    private ReturnPath? TryReconnectOnce(RunContext ctx, DirtyBitmap pending, ref Exception last)
    {
        ReturnPath? link = null;
        try
        {
            Stream stream = _reconnect!(_abandon);
            _stream.Dispose();
            _stream = stream;
            _writer.Reconnect(stream);
            _writer.Write(FrameType.PostCopyResume, ControlJson.Encode(new PostCopyResume { MigrationId = _migrationId }));
            _writer.Flush();
            link = new ReturnPath(stream, _memory.PageCount);
            var missing = new DirtyBitmap(_memory.PageCount);
            ulong[] words = new ulong[Math.Min(missing.WordCount, PendingPagesMessage.MaxWordsPerFrame)];
            for (int first = 0; first < missing.WordCount;)
            {
                var (type, payload) = link.Take(_options.SwitchoverTimeout, _abandon, "missing pages after reconnecting");
                if (type != FrameType.PendingPages)
                {
                    throw new MigrationFailedException(MigrationFailure.ProtocolViolation, $"destination answered a post-copy resume with {type}");
                }
                int n = PendingPagesMessage.Read(payload, first, missing.WordCount, words);
                missing.OrWords(first, words.AsSpan(0, n));
                first += n;
            }
            foreach (long p in missing)
            {
                if (!pending[p])
                {
                    pending.Set(p);
                    ctx.Remaining++;
                    ctx.PagesLost++;
                }
            }
            // Pending pages may now lie behind the cursor: start its walk again.
            ctx.Cursor = new PrePagingCursor(pending);
            ctx.Recoveries++;
            _recoveredReturnPaths.Add(link);
            SetPhase("post-copy");
            return link;
        }
        catch (OperationCanceledException) when (_abandon.IsCancellationRequested)
        {
            link?.Dispose();
            throw Abandoned(ctx);
        }
        catch (MigrationFailedException refused) when (refused.Kind == MigrationFailure.Aborted)
        {
            // The destination is up and says no post-copy of this migration waits there: its VM is gone.
            link?.Dispose();
            throw new MigrationFailedException(MigrationFailure.Aborted, $"reconnected, but the destination no longer has this post-copy: {refused.Message}", refused);
        }
        catch (Exception ex) when (ex is not MigrationFailedException { Kind: MigrationFailure.ProtocolViolation })
        {
            link?.Dispose();
            last = ex is MigrationFailedException ? ex : ReturnPath.Wrap(ex, "reconnecting");
            return null;
        }
    }

    private static long Ticks(TimeSpan t) => (long)(t.TotalSeconds * Stopwatch.Frequency);
}
