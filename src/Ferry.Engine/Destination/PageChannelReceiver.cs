using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Destination;

/// <summary>
/// One page connection at the destination: a thread that reads its frames, installs its page
/// batches (through its own <see cref="PageInstaller"/>, so connections install concurrently) and
/// acknowledges each round-end marker on the same connection once everything before it is in.
/// Anything else on it, or a batch when no pages may come, ends it with the reason in <see cref="Failure"/>.
/// </summary>
internal sealed class PageChannelReceiver : IDisposable
{
    private readonly Stream _stream;
    private readonly FrameReader _reader;
    private readonly FrameWriter _writer;
    private readonly Func<ReadOnlySpan<byte>, PageInstaller, bool> _install;
    private readonly Action<PageChannelReceiver> _ended;
    private readonly PageInstaller _installer;
    private readonly Thread _thread;
    private volatile bool _closing;

    /// <param name="install">Installs one checked batch; false when no pages may come now (the receiver then fails).</param>
    /// <param name="ended">Told once when the connection ends, by failure or close.</param>
    public PageChannelReceiver(int channel, int generation, Stream stream, FrameReader reader, GuestMemory memory,
        Func<ReadOnlySpan<byte>, PageInstaller, bool> install, Action<PageChannelReceiver> ended)
    {
        Channel = channel;
        Generation = generation;
        _stream = stream;
        _reader = reader;
        _writer = new FrameWriter(stream);
        _install = install;
        _ended = ended;
        _installer = new PageInstaller(memory);
        _thread = new Thread(Run) { IsBackground = true, Name = $"ferry-page-receiver-{channel}" };
    }

    public int Channel { get; }

    public int Generation { get; }

    /// <summary>Why the connection ended, when it did not end because it was closed here.</summary>
    public Exception? Failure { get; private set; }

    public void Start() => _thread.Start();

    private void Run()
    {
        try
        {
            while (true)
            {
                Frame f = _reader.Read();
                switch (f.Type)
                {
                    case FrameType.PageBatch:
                        if (!_install(f.Payload, _installer))
                        {
                            throw new ProtocolException(ProtocolErrorKind.UnexpectedFrame, $"page batch on page connection {Channel} when no pages may come");
                        }
                        break;
                    case FrameType.RoundEnd:
                    {
                        Span<byte> ack = stackalloc byte[RoundEnd.Size];
                        new RoundEnd(RoundEnd.Read(f.Payload).Round, 0).Write(ack);
                        _writer.Write(FrameType.RoundAck, ack);
                        _writer.Flush();
                        break;
                    }
                    case FrameType.Abort:
                        throw new MigrationFailedException(Core.Migration.MigrationFailure.Aborted,
                            "source aborted: " + ControlJson.Decode<Abort>(f.Payload, "abort").Reason);
                    default:
                        throw new ProtocolException(ProtocolErrorKind.UnexpectedFrame, $"unexpected {f.Type} frame on page connection {Channel}");
                }
            }
        }
        catch (Exception ex)
        {
            if (!_closing)
            {
                Failure = ex;
            }
        }
        finally
        {
            _ended(this);
        }
    }

    public void Dispose()
    {
        _closing = true;
        _stream.Dispose();
        if (_thread.IsAlive && Thread.CurrentThread != _thread)
        {
            _thread.Join(TimeSpan.FromSeconds(5));
        }
    }
}
