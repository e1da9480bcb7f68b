using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;

namespace Ferry.Engine.Source;

/// <summary>
/// Reads one connection's destination → source direction on its own thread and leaves what it
/// reads in the migration's inbox, so a destination that aborts or vanishes mid-round is noticed
/// at the next batch boundary instead of at switchover. Page requests and round acknowledgements
/// are decoded here (they are small and frequent); other frames go over whole.
/// </summary>
internal sealed class ReturnPath : IDisposable
{
    private readonly FrameReader _reader;
    private readonly SourceInbox _inbox;
    private readonly long _guestPages;
    private readonly Thread _thread;
    private volatile Exception? _error;

    private readonly int _channel;

    /// <param name="channel">The page connection this reads (−1: the control connection).</param>
    public ReturnPath(Stream stream, long guestPages, SourceInbox inbox, string name = "ferry-return-path", int channel = -1)
    {
        _channel = channel;
        _guestPages = guestPages;
        _inbox = inbox;
        _reader = new FrameReader(stream);
        _thread = new Thread(Run) { IsBackground = true, Name = name };
    }

    /// <summary>Why reading ended, once it has.</summary>
    public Exception? Error => _error;

    public void Start() => _thread.Start();

    /// <summary>Reads one frame on the caller's thread (before <see cref="Start"/>: a reconnection's handshake frames).</summary>
    public Frame ReadDirect() => _reader.Read();

    public static MigrationFailedException Wrap(Exception e, string context) => e switch
    {
        MigrationFailedException m => m,
        ProtocolException { Kind: ProtocolErrorKind.Truncated } p => new MigrationFailedException(Core.Migration.MigrationFailure.PeerDisconnected, $"destination disconnected ({context}): {p.Message}", p),
        ProtocolException p => new MigrationFailedException(Core.Migration.MigrationFailure.ProtocolViolation, $"destination broke the protocol ({context}): {p.Message}", p),
        IOException io => new MigrationFailedException(Core.Migration.MigrationFailure.PeerDisconnected, $"connection to destination lost ({context}): {io.InnerException?.Message ?? io.Message}", io),
        ObjectDisposedException od => new MigrationFailedException(Core.Migration.MigrationFailure.PeerDisconnected, $"connection to destination closed ({context})", od),
        _ => new MigrationFailedException(Core.Migration.MigrationFailure.Internal, $"{context}: {e.Message}", e),
    };

    private void Run()
    {
        try
        {
            while (true)
            {
                Frame f = _reader.Read();
                switch (f.Type)
                {
                    case FrameType.Abort:
                        var abort = ControlJson.Decode<Abort>(f.Payload, "abort");
                        throw new MigrationFailedException(Core.Migration.MigrationFailure.Aborted, $"destination aborted: {abort.Reason}");
                    case FrameType.PageRequest:
                        _inbox.Post(new SourceInput(SourceInputKind.PageRequest, this, Value: PageRequest.Read(f.Payload, _guestPages).Page, Channel: _channel));
                        break;
                    case FrameType.RoundAck:
                        _inbox.Post(new SourceInput(SourceInputKind.RoundAck, this, Value: RoundEnd.Read(f.Payload).Round, Channel: _channel));
                        break;
                    default:
                        _inbox.Post(new SourceInput(SourceInputKind.Frame, this, Frame: f.Type, Payload: f.Payload.ToArray(), Channel: _channel));
                        break;
                }
            }
        }
        catch (Exception ex)
        {
            _error = ex;
            _inbox.Post(new SourceInput(SourceInputKind.LinkFailed, this, Error: ex, Channel: _channel));
        }
    }

    public void Dispose()
    {
        // The owner closes the stream first, which ends the reader's blocking read.
        if (_thread.IsAlive)
        {
            _thread.Join(TimeSpan.FromSeconds(5));
        }
    }
}
