using System.Collections.Concurrent;
using Ferry.Protocol;
using Ferry.Protocol.Framing;

namespace Ferry.Engine.Source;

/// <summary>
/// Reads the destination → source direction on its own thread, so a destination that aborts or
/// vanishes mid-round is noticed at the next batch boundary instead of at switchover.
/// </summary>
internal sealed class ReturnPath : IDisposable
{
    private readonly FrameReader _reader;
    private readonly BlockingCollection<(FrameType Type, byte[] Payload)> _frames = new(boundedCapacity: 16);
    private readonly CancellationTokenSource _failed = new();
    private readonly Thread _thread;
    private volatile Exception? _error;
    private int _lastAckedRound;
    private readonly object _ackGate = new();
    private readonly long _guestPages;
    private readonly ConcurrentQueue<long> _pageRequests = new();
    private readonly AutoResetEvent _pageRequestArrived = new(false);

    public ReturnPath(Stream stream, long guestPages)
    {
        _guestPages = guestPages;
        _reader = new FrameReader(stream);
        _thread = new Thread(Run) { IsBackground = true, Name = "ferry-return-path" };
        _thread.Start();
    }

    /// <summary>Cancelled when the return path fails (disconnect, bad frame, abort).</summary>
    public CancellationToken Failed => _failed.Token;

    public Exception? Error => _error;

    /// <summary>
    /// The return path's error, waiting up to <paramref name="grace"/> for one. A write that failed
    /// because the destination closed the connection usually races the reader thread, which is
    /// about to read the destination's Abort (the real cause) or the end of the stream.
    /// </summary>
    public Exception? ErrorWithin(TimeSpan grace)
    {
        if (_error is null)
        {
            _failed.Token.WaitHandle.WaitOne(grace);
        }
        return _error;
    }

    /// <summary>Takes the next frame, waiting at most <paramref name="timeout"/>.</summary>
    public (FrameType Type, byte[] Payload) Take(TimeSpan timeout, CancellationToken ct, string waitingFor)
    {
        try
        {
            if (_frames.TryTake(out var f, (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds), ct))
            {
                return f;
            }
        }
        catch (InvalidOperationException)
        {
            // Completed: the reader stopped; report why below.
        }
        if (_error is { } e)
        {
            throw Wrap(e, waitingFor);
        }
        ct.ThrowIfCancellationRequested();
        throw new MigrationFailedException(MigrationFailure.Timeout, $"destination sent no {waitingFor} within {timeout.TotalSeconds:0} s");
    }

    /// <summary>The oldest post-copy page request not yet taken. Requests bypass the frame queue so they never wait behind anything.</summary>
    public bool TryTakePageRequest(out long page) => _pageRequests.TryDequeue(out page);

    /// <summary>Set when a page request arrives, so a push waiting out its bandwidth share can step aside for it.</summary>
    public WaitHandle PageRequestArrived => _pageRequestArrived;

    /// <summary>Waits until the destination has installed every page of <paramref name="round"/>.</summary>
    public void WaitForRoundAck(int round, TimeSpan timeout, CancellationToken ct)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_ackGate)
        {
            while (_lastAckedRound < round)
            {
                if (_error is { } e)
                {
                    throw Wrap(e, $"waiting for round {round} to drain");
                }
                ct.ThrowIfCancellationRequested();
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    throw new MigrationFailedException(MigrationFailure.Timeout, $"destination did not confirm round {round} within {timeout.TotalSeconds:0} s");
                }
                Monitor.Wait(_ackGate, (int)Math.Min(left, 100));
            }
        }
    }

    public static MigrationFailedException Wrap(Exception e, string context) => e switch
    {
        MigrationFailedException m => m,
        ProtocolException { Kind: ProtocolErrorKind.Truncated } p => new MigrationFailedException(MigrationFailure.PeerDisconnected, $"destination disconnected ({context}): {p.Message}", p),
        ProtocolException p => new MigrationFailedException(MigrationFailure.ProtocolViolation, $"destination broke the protocol ({context}): {p.Message}", p),
        IOException io => new MigrationFailedException(MigrationFailure.PeerDisconnected, $"connection to destination lost ({context}): {io.InnerException?.Message ?? io.Message}", io),
        ObjectDisposedException od => new MigrationFailedException(MigrationFailure.PeerDisconnected, $"connection to destination closed ({context})", od),
        _ => new MigrationFailedException(MigrationFailure.Internal, $"{context}: {e.Message}", e),
    };

    private void Run()
    {
        try
        {
            while (true)
            {
                Frame f = _reader.Read();
                if (f.Type == FrameType.Abort)
                {
                    var abort = Protocol.Messages.ControlJson.Decode<Protocol.Messages.Abort>(f.Payload, "abort");
                    throw new MigrationFailedException(MigrationFailure.Aborted, $"destination aborted: {abort.Reason}");
                }
                if (f.Type == FrameType.PageRequest)
                {
                    _pageRequests.Enqueue(Protocol.Messages.PageRequest.Read(f.Payload, _guestPages).Page);
                    _pageRequestArrived.Set();
                    continue;
                }
                if (f.Type == FrameType.RoundAck)
                {
                    var ack = Protocol.Messages.RoundEnd.Read(f.Payload);
                    lock (_ackGate)
                    {
                        _lastAckedRound = Math.Max(_lastAckedRound, ack.Round);
                        Monitor.PulseAll(_ackGate);
                    }
                    continue;
                }
                _frames.Add((f.Type, f.Payload.ToArray()));
            }
        }
        catch (Exception ex)
        {
            _error = ex;
            _frames.CompleteAdding();
            _failed.Cancel();
            lock (_ackGate)
            {
                Monitor.PulseAll(_ackGate);
            }
        }
    }

    public void Dispose()
    {
        // The owner closes the stream first, which ends the reader's blocking read.
        _thread.Join(TimeSpan.FromSeconds(5));
        _failed.Dispose();
        _pageRequestArrived.Dispose();
    }
}
