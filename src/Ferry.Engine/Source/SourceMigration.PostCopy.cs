using System.Diagnostics;
using Ferry.Core.Pacing;
using Ferry.Core.Paging;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

public sealed partial class SourceMigration
{
    /// <summary>
    /// Pages per pushed batch in post-copy (64 KiB). Small on purpose: a page request waits
    /// behind at most one pushed frame on this side of the socket, so demand stays fast.
    /// </summary>
    private const int PushBatchPages = 16;

    /// <summary>
    /// The VM is paused and <paramref name="pending"/> holds every page the destination still
    /// lacks. Sends the vCPU and device state and the pending map, switches over (the VM runs at
    /// the destination from the commit on), then serves page requests first and pushes the rest
    /// outward from the latest fault until nothing is pending, and finally has the destination
    /// confirm every page by digest. Any failure after the commit leaves the source copy paused.
    /// </summary>
    private bool SwitchToPostCopy(RunContext ctx, DirtyBitmap pending, ReturnPath returnPath, CancellationToken ct)
    {
        ctx.PostCopyUsed = true;
        ctx.PreCopyRounds = _rounds.Count;
        ctx.PendingAtSwitchover = pending.Count();
        ctx.ZeroFilledLocally = _memory.PageCount - _memory.PopulatedCount();
        ctx.FinalPagesDone = Stopwatch.GetTimestamp();
        SendState();
        SendPendingMap(pending);
        ctx.StateDone = Stopwatch.GetTimestamp();
        Switchover(ctx, returnPath, ct);
        ctx.Remaining = ctx.PendingAtSwitchover;
        ctx.Cursor = new PrePagingCursor(pending);
        BeginRound(_round + 1, ctx.Remaining, "post-copy");
        ReturnPath link = returnPath;
        while (true)
        {
            try
            {
                // From here the VM runs at the destination: a user's cancel applies only while post-copy is paused (it abandons it).
                ServePostCopy(ctx, pending, link);
                ConfirmPostCopy(ctx, link);
                break;
            }
            catch (Exception ex)
            {
                MigrationFailedException failure = ClassifyPostCopy(ex, link);
                if (_reconnect is null || failure.InnerException is not MigrationFailedException { Kind: MigrationFailure.PeerDisconnected })
                {
                    throw new PostCopyBrokenException(ex);
                }
                try
                {
                    link = Reconnect(ctx, pending, failure.InnerException!);
                }
                catch (Exception gaveUp)
                {
                    // Still after the commit: never let this look like a failure the source may resume from.
                    throw new PostCopyBrokenException(gaveUp);
                }
            }
        }
        _rounds.Add(RoundRecordFor("post-copy", pages: _roundSent, dirtied: 0, decision: "post-copy",
            reason: $"{ctx.DemandPages} on demand, {ctx.PrePagedPages} pre-paged, {ctx.PushPages} pushed" +
                (ctx.Recoveries > 0 ? $"; {ctx.Recoveries} reconnection(s), {ctx.PagesLost} pages sent again" : "")));
        SetPhase("completed");
        VerifySourceCopy(ctx);
        return true;
    }

    /// <summary>The pending map; its presence is what makes this switchover a post-copy one (a guest has at least one page, so at least one frame goes).</summary>
    private void SendPendingMap(DirtyBitmap pending) =>
        PendingPagesMessage.WriteAll(_writer, pending.WordCount, pending.CopyWordsTo);

    /// <summary>Demand first, then push in pre-paging order, until no page is pending.</summary>
    private void ServePostCopy(RunContext ctx, DirtyBitmap pending, ReturnPath returnPath)
    {
        CancellationToken linkFailed = returnPath.Failed;
        int round = _round;
        PrePagingCursor cursor = ctx.Cursor!;
        long demandSincePush = 0;
        PostCopyAutoPacing? autoPacing = _options.MaxBandwidthBytesPerSecond == 0 && _linkDelivery is not null ? new PostCopyAutoPacing() : null;
        long nextLinkSample = 0;
        while (ctx.Remaining > 0)
        {
            long before = ctx.Remaining;
            if (autoPacing is not null && Stopwatch.GetTimestamp() >= nextLinkSample)
            {
                nextLinkSample = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 1000;
                SampleLink(ctx, autoPacing);
            }
            // Strict priority: every request that has arrived is answered before another page is pushed.
            var demand = new BatchBuilder(this, round, owe: true);
            while (returnPath.TryTakePageRequest(out long requested))
            {
                if (!pending[requested])
                {
                    ctx.RequestsAlreadySent++;
                    continue;
                }
                demand.Add(requested, linkFailed);
                pending.Clear(requested);
                ctx.Remaining--;
                ctx.DemandPages++;
                demandSincePush++;
                cursor.Recentre(requested);
            }
            demand.Finish(linkFailed);
            // The push steps aside for demand until demand has used a push batch's worth of the
            // link since the last push: light demand is answered at once, while faults that would
            // fill the link share it about half and half with the push (and its pre-paging), and
            // answers cannot run the bandwidth limit into unbounded debt.
            if (!PushMayGo(returnPath, linkFailed, mayYield: demandSincePush < PushBatchPages))
            {
                continue;
            }
            demandSincePush = 0;
            // The bucket was clear, so this batch goes at once and its bytes are waited out before the next one.
            var push = new BatchBuilder(this, round, PushBatchPages, owe: true);
            for (int i = 0; i < PushBatchPages && cursor.TryNext(out long page, out bool prePaged); i++)
            {
                push.Add(page, linkFailed);
                pending.Clear(page);
                ctx.Remaining--;
                if (prePaged)
                {
                    ctx.PrePagedPages++;
                }
                else
                {
                    ctx.PushPages++;
                }
            }
            push.Finish(linkFailed);
            if (ctx.Remaining > 0 && before == ctx.Remaining)
            {
                // The cursor returns every pending page, so an iteration without progress is a bug here, not a reason to spin.
                throw new InvalidOperationException($"post-copy lost track of {ctx.Remaining} pending pages");
            }
        }
        _writer.Flush();
        ctx.LastPageSentAt = Stopwatch.GetTimestamp();
    }

    /// <summary>
    /// Post-copy with no bandwidth limit: once TCP's delivery-rate estimate has settled, paces the
    /// push at <see cref="PostCopyAutoPacing.Fraction"/> of it, so the queues between the hosts stay
    /// short and a page answer does not wait behind pushed pages there. The bucket's burst is small
    /// (2 ms of rate) for the same reason.
    /// </summary>
    private void SampleLink(RunContext ctx, PostCopyAutoPacing autoPacing)
    {
        if (_linkDelivery!(_stream) is not { } sample)
        {
            return;
        }
        long now = Stopwatch.GetTimestamp();
        if (autoPacing.Observe(sample, Seconds(_start, now)) && autoPacing.PacingBytesPerSecond is { } rate)
        {
            _bucket = new TokenBucket(rate, FrameHeader.Size + PageBatchCodec.MaxPayloadFor(PushBatchPages), Seconds(_start, now), burstSeconds: 0.002);
            ctx.AutoPacedBytesPerSecond = rate;
        }
    }

    /// <summary>
    /// Waits until the bandwidth already used (pushed batches and answers to faults) is paid
    /// for. Returns false when <paramref name="mayYield"/> and a page request arrives first: it
    /// is answered before any more push, so a fault waits for the pacing only when demand has
    /// already had its share since the last push.
    /// </summary>
    private bool PushMayGo(ReturnPath returnPath, CancellationToken linkFailed, bool mayYield)
    {
        if (_bucket is null)
        {
            return true;
        }
        TimeSpan owed = _bucket.Take(0, Seconds(_start, Stopwatch.GetTimestamp()));
        if (owed <= TimeSpan.Zero)
        {
            return true;
        }
        if (!mayYield)
        {
            linkFailed.WaitHandle.WaitOne(owed);
            linkFailed.ThrowIfCancellationRequested();
            return true;
        }
        _pushWaitHandles[0] = linkFailed.WaitHandle;
        _pushWaitHandles[1] = returnPath.PageRequestArrived;
        int woken = WaitHandle.WaitAny(_pushWaitHandles, owed);
        linkFailed.ThrowIfCancellationRequested();
        return woken == WaitHandle.WaitTimeout;
    }

    private readonly WaitHandle[] _pushWaitHandles = new WaitHandle[2];

    /// <summary>Tells the destination the last page is out and waits for its verdict on all of them.</summary>
    private void ConfirmPostCopy(RunContext ctx, ReturnPath returnPath)
    {
        SetPhase("post-copy confirm");
        ctx.SourceDigest = _digest.Compute();
        Span<byte> end = stackalloc byte[PostCopyEnd.Size];
        new PostCopyEnd(ctx.SourceDigest, _pagesSent).Write(end);
        _writer.Write(FrameType.PostCopyEnd, end);
        _writer.Flush();
        ctx.PostCopyEndSent = true;
        var (type, payload) = returnPath.Take(_options.PostCopyCompletionTimeout, CancellationToken.None, "post-copy completion");
        if (type != FrameType.PostCopyComplete)
        {
            throw new MigrationFailedException(MigrationFailure.ProtocolViolation, $"destination answered the end of post-copy with {type}");
        }
        ctx.PostCopyComplete = ControlJson.Decode<PostCopyComplete>(payload, "post-copy complete");
        ctx.CompletedAt = Stopwatch.GetTimestamp();
        if (!ctx.PostCopyComplete.DigestMatches)
        {
            throw new MigrationFailedException(MigrationFailure.DigestMismatch,
                $"memory digest mismatch after post-copy: source {MemoryDigest.Format(ctx.SourceDigest)}, destination {ctx.PostCopyComplete.DestinationDigest}" +
                (ctx.PostCopyComplete.Problem is { } p ? $" ({p})" : ""));
        }
    }
}

/// <summary>Post-copy failed after the commit: the VM had resumed at the destination, so the source copy must stay paused.</summary>
internal sealed class PostCopyBrokenException(Exception inner)
    : Exception("post-copy broken after switchover: " + inner.Message, inner);
