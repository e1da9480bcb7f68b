using System.Buffers;
using System.Collections.Concurrent;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

/// <summary>One unit of work for a page connection's worker.</summary>
internal readonly record struct ChannelWork(ChannelWorkKind Kind, int Round, long[]? Pages = null, int Count = 0, int TakenBytes = 0);

internal enum ChannelWorkKind
{
    /// <summary>Build and write one batch of these pages.</summary>
    Pages,

    /// <summary>Write the round-end marker for <see cref="ChannelWork.Round"/> (with this connection's page count in it).</summary>
    RoundEnd,

    /// <summary>Report once everything before it is written.</summary>
    Flush,
}

/// <summary>
/// One page connection at the source: a worker thread that copies the pages it is handed from
/// guest RAM into frames (hashing them as it goes) and writes them, and a return path that reads
/// the destination's round acknowledgements. What it wrote is reported to the migration thread
/// through the inbox; it decides nothing. The queue is short so the migration thread's pacing and
/// round boundaries stay close to what is on the wire.
/// </summary>
internal sealed class PageChannel : IBatchGate, IDisposable
{
    private const int QueueDepth = 4;

    private readonly BlockingCollection<ChannelWork> _work = new(QueueDepth);
    private readonly FrameWriter _writer;
    private readonly PageSender _sender;
    private readonly SourceInbox _inbox;
    private readonly Thread _worker;
    private long _pagesThisRound;
    private int _taken;

    public PageChannel(int index, Stream stream, GuestMemory memory, SentPages sent, TimeProvider time, SourceInbox inbox)
    {
        Index = index;
        Stream = stream;
        _inbox = inbox;
        _writer = new FrameWriter(stream);
        _sender = new PageSender(memory, _writer, this, time, sent);
        ReturnPath = new ReturnPath(stream, memory.PageCount, inbox, $"ferry-page-connection-{index}-return", channel: index);
        _worker = new Thread(Run) { IsBackground = true, Name = $"ferry-page-connection-{index}" };
    }

    public int Index { get; }

    public Stream Stream { get; }

    public ReturnPath ReturnPath { get; }

    /// <summary>Time this worker spent hashing pages.</summary>
    public double HashMs => _sender.HashMs;

    /// <summary>Writes the first frame of a page connection: which migration, which connection, which generation.</summary>
    public void Hello(string migrationId, int generation)
    {
        _writer.Write(FrameType.PageChannel, ControlJson.Encode(new PageChannelHello { MigrationId = migrationId, Channel = Index, Generation = generation }));
        _writer.Flush();
    }

    public void Start()
    {
        ReturnPath.Start();
        _worker.Start();
    }

    /// <summary>Queues work, waiting at most <paramref name="wait"/> for room. False when there was none (or the worker stopped).</summary>
    public bool TryEnqueue(in ChannelWork work, TimeSpan wait)
    {
        try
        {
            return _work.TryAdd(work, wait);
        }
        catch (InvalidOperationException)
        {
            // Completed: the connection is being torn down.
            return false;
        }
    }

    private void Run()
    {
        try
        {
            foreach (ChannelWork w in _work.GetConsumingEnumerable())
            {
                switch (w.Kind)
                {
                    case ChannelWorkKind.Pages:
                        try
                        {
                            _taken = w.TakenBytes;
                            _sender.Begin(w.Round, paced: false, maxPages: w.Count);
                            for (int i = 0; i < w.Count; i++)
                            {
                                _sender.Add(w.Pages![i]);
                            }
                        }
                        finally
                        {
                            ArrayPool<long>.Shared.Return(w.Pages!);
                        }
                        break;
                    case ChannelWorkKind.RoundEnd:
                    {
                        Span<byte> marker = stackalloc byte[RoundEnd.Size];
                        new RoundEnd(w.Round, _pagesThisRound).Write(marker);
                        long before = _writer.BytesWritten;
                        _writer.Write(FrameType.RoundEnd, marker);
                        _writer.Flush();
                        _pagesThisRound = 0;
                        _inbox.Post(new SourceInput(SourceInputKind.RoundWritten, ReturnPath, Value: w.Round, Channel: Index,
                            Batch: new BatchReport(0, 0, 0, _writer.BytesWritten - before, 0)));
                        break;
                    }
                    default:
                        _writer.Flush();
                        _inbox.Post(new SourceInput(SourceInputKind.Flushed, ReturnPath, Channel: Index));
                        break;
                }
            }
        }
        catch (Exception ex)
        {
            // A write failed: the connection is broken. The migration thread decides what that means.
            _inbox.Post(new SourceInput(SourceInputKind.LinkFailed, ReturnPath, Error: ex, Channel: Index));
            _work.CompleteAdding();
            foreach (ChannelWork left in _work.GetConsumingEnumerable())
            {
                if (left.Pages is { } pages)
                {
                    ArrayPool<long>.Shared.Return(pages);
                }
            }
        }
    }

    bool IBatchGate.BeforeBatch(int frameBytes, bool paced) => true;

    bool IBatchGate.AfterBatch(int pages, int zeroPages, int firstTime, long wireBytes)
    {
        _pagesThisRound += pages;
        _inbox.Post(new SourceInput(SourceInputKind.BatchSent, ReturnPath, Channel: Index, Batch: new BatchReport(pages, zeroPages, firstTime, wireBytes, _taken)));
        return true;
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        // Closing the stream ends a write in progress and the return path's read.
        Stream.Dispose();
        _worker.Join(TimeSpan.FromSeconds(5));
        ReturnPath.Dispose();
        _work.Dispose();
    }
}
