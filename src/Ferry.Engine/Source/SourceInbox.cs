using System.Collections.Concurrent;
using Ferry.Protocol.Framing;

namespace Ferry.Engine.Source;

internal enum SourceInputKind
{
    /// <summary>A frame from the destination (answers: OfferAccepted, SwitchoverReady, Resumed, PostCopyComplete…).</summary>
    Frame,

    /// <summary>A post-copy page request (<see cref="SourceInput.Value"/> is the page).</summary>
    PageRequest,

    /// <summary>The destination installed every page up to the end of round <see cref="SourceInput.Value"/>.</summary>
    RoundAck,

    /// <summary>The return path ended (<see cref="SourceInput.Error"/> says why).</summary>
    LinkFailed,

    /// <summary>A resume request for a paused post-copy (from the API).</summary>
    ResumeRequested,

    /// <summary>The user's cancel.</summary>
    Cancel,

    /// <summary>A page connection wrote a batch (<see cref="SourceInput.Batch"/> says what it held).</summary>
    BatchSent,

    /// <summary>A page connection wrote its round-end marker for round <see cref="SourceInput.Value"/>.</summary>
    RoundWritten,

    /// <summary>A page connection has written everything queued before its flush marker.</summary>
    Flushed,
}

/// <summary>What a page connection's worker wrote in one frame, and the bandwidth the migration thread took for it beforehand.</summary>
internal readonly record struct BatchReport(int Pages, int ZeroPages, int FirstTime, long WireBytes, int TakenBytes);

/// <summary>One thing that happened outside the migration thread; <see cref="From"/> is the connection it came from (stale ones are ignored after a reconnect).</summary>
/// <param name="Channel">The page connection it concerns (−1: the control connection or none).</param>
internal readonly record struct SourceInput(SourceInputKind Kind, ReturnPath? From = null, long Value = 0, FrameType Frame = default,
    byte[]? Payload = null, Exception? Error = null, int Channel = -1, BatchReport Batch = default);

/// <summary>
/// Where the return path's reader threads, the API and the cancel token leave what happened for
/// the migration thread, which alone drives the machine. Unbounded: the destination sends few
/// frames (its page requests are at most one per vCPU in flight).
/// </summary>
internal sealed class SourceInbox : IDisposable
{
    private readonly ConcurrentQueue<SourceInput> _queue = new();
    private readonly SemaphoreSlim _signal = new(0);

    public void Post(in SourceInput input)
    {
        _queue.Enqueue(input);
        _signal.Release();
    }

    /// <summary>The next input, waiting at most <paramref name="wait"/> (zero: only what is there).</summary>
    public bool TryTake(out SourceInput input, TimeSpan wait)
    {
        if (wait > TimeSpan.Zero ? _signal.Wait(wait) : _signal.Wait(0))
        {
            return _queue.TryDequeue(out input);
        }
        input = default;
        return false;
    }

    public void Dispose() => _signal.Dispose();
}
