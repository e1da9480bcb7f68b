using System.Diagnostics;
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
        try
        {
            // From here the VM runs at the destination: a user's cancel no longer applies, only a broken link ends this.
            ServePostCopy(ctx, pending, returnPath);
            ConfirmPostCopy(ctx, returnPath);
        }
        catch (Exception ex)
        {
            throw new PostCopyBrokenException(ex);
        }
        SetPhase("completed");
        VerifySourceCopy(ctx);
        return true;
    }

    private void SendPendingMap(DirtyBitmap pending)
    {
        Span<ulong> words = stackalloc ulong[256];
        int total = pending.WordCount;
        // At least one frame even for an empty map: its presence is what makes this a post-copy switchover.
        for (int first = 0; first < total || first == 0;)
        {
            Span<byte> payload = _writer.Begin(FrameType.PendingPages);
            int n = Math.Min(total - first, PendingPagesMessage.MaxWordsPerFrame);
            int pos = PendingPagesMessage.HeaderSize;
            for (int done = 0; done < n;)
            {
                int k = Math.Min(words.Length, n - done);
                pending.CopyWordsTo(first + done, words[..k]);
                for (int i = 0; i < k; i++)
                {
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(payload[(pos + 8 * i)..], words[i]);
                }
                pos += 8 * k;
                done += k;
            }
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)first);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], (uint)n);
            _writer.Complete(pos);
            first += n;
            if (total == 0)
            {
                break;
            }
        }
    }

    /// <summary>Demand first, then push in pre-paging order, until no page is pending.</summary>
    private void ServePostCopy(RunContext ctx, DirtyBitmap pending, ReturnPath returnPath)
    {
        CancellationToken linkFailed = returnPath.Failed;
        long remaining = ctx.PendingAtSwitchover;
        int round = _round + 1;
        BeginRound(round, remaining, "post-copy");
        var cursor = new PrePagingCursor(pending);
        while (remaining > 0)
        {
            long before = remaining;
            // Strict priority: every request that has arrived is answered before another page is pushed.
            var demand = new BatchBuilder(this, round, urgent: true);
            while (returnPath.TryTakePageRequest(out long requested))
            {
                if (!pending[requested])
                {
                    ctx.RequestsAlreadySent++;
                    continue;
                }
                demand.Add(requested, linkFailed);
                pending.Clear(requested);
                remaining--;
                ctx.DemandPages++;
                cursor.Recentre(requested);
            }
            demand.Finish(linkFailed);
            var push = new BatchBuilder(this, round, PushBatchPages);
            for (int i = 0; i < PushBatchPages && cursor.TryNext(out long page, out bool prePaged); i++)
            {
                push.Add(page, linkFailed);
                pending.Clear(page);
                remaining--;
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
            if (remaining > 0 && before == remaining)
            {
                // The cursor returns every pending page, so an iteration without progress is a bug here, not a reason to spin.
                throw new InvalidOperationException($"post-copy lost track of {remaining} pending pages");
            }
        }
        _writer.Flush();
        ctx.LastPageSentAt = Stopwatch.GetTimestamp();
        _rounds.Add(RoundRecordFor("post-copy", pages: _roundSent, dirtied: 0, decision: "post-copy",
            reason: $"{ctx.DemandPages} on demand, {ctx.PrePagedPages} pre-paged, {ctx.PushPages} pushed"));
    }

    /// <summary>Tells the destination the last page is out and waits for its verdict on all of them.</summary>
    private void ConfirmPostCopy(RunContext ctx, ReturnPath returnPath)
    {
        SetPhase("post-copy confirm");
        ctx.SourceDigest = _digest.Compute();
        Span<byte> end = stackalloc byte[PostCopyEnd.Size];
        new PostCopyEnd(ctx.SourceDigest, _pagesSent).Write(end);
        _writer.Write(FrameType.PostCopyEnd, end);
        _writer.Flush();
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
