using System.Buffers;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

/// <summary>Every page on the control connection (no page connections): batches built and written by the migration thread itself.</summary>
internal sealed class InlinePageOutput(PageSender sender, Func<FrameWriter> writer, ISendLoop loop, Action<long> countWire, Func<long> roundSent) : IPageOutput
{
    public double HashMs => sender.HashMs;

    public void Begin(int round, bool paced, int maxPages) => sender.Begin(round, paced, maxPages);

    public bool Add(long page) => sender.Add(page);

    public bool Finish() => sender.Finish();

    public void Abandon() => sender.Abandon();

    public bool EndRound(int round)
    {
        Span<byte> marker = stackalloc byte[RoundEnd.Size];
        new RoundEnd(round, roundSent()).Write(marker);
        if (!loop.BeforeBatch(FrameHeader.Size + RoundEnd.Size, paced: true))
        {
            return false;
        }
        FrameWriter w = writer();
        long before = w.BytesWritten;
        w.Write(FrameType.RoundEnd, marker);
        w.Flush();
        countWire(w.BytesWritten - before);
        return true;
    }

    public bool Flush()
    {
        writer().Flush();
        return true;
    }
}

/// <summary>
/// Pages spread over the page connections. A page always goes on the same connection — chosen by
/// its 1 MiB chunk (256 pages, so a bitmap word never spans connections) — so a newer copy of a
/// page can never overtake an older one: each connection is FIFO, and the destination installs
/// each connection's frames in order. The migration thread takes the bandwidth for each batch
/// before handing it over (the exact bytes are refunded when the worker reports them), and waits
/// at round ends until every connection has written its marker.
/// </summary>
internal sealed class ChannelPageOutput : IPageOutput
{
    /// <summary>Pages per chunk that stays on one connection (a multiple of 64: bitmap words are never shared).</summary>
    public const int ChunkShift = 8;

    private static readonly TimeSpan EnqueueSlice = TimeSpan.FromMilliseconds(20);

    private readonly PageChannel[] _channels;
    private readonly ISendLoop _loop;
    private readonly long[]?[] _open;
    private readonly int[] _count;
    private readonly long[] _roundWritten;
    private readonly bool[] _flushed;
    private int _round;
    private bool _paced;
    private int _maxPages;

    public ChannelPageOutput(PageChannel[] channels, ISendLoop loop)
    {
        _channels = channels;
        _loop = loop;
        _open = new long[]?[channels.Length];
        _count = new int[channels.Length];
        _roundWritten = new long[channels.Length];
        _flushed = new bool[channels.Length];
    }

    public IReadOnlyList<PageChannel> Channels => _channels;

    public double HashMs => _channels.Sum(c => c.HashMs);

    /// <summary>The connection that carries <paramref name="page"/>.</summary>
    public int ChannelOf(long page) => (int)((page >> ChunkShift) % _channels.Length);

    public void Begin(int round, bool paced, int maxPages)
    {
        _round = round;
        _paced = paced;
        _maxPages = Math.Min(maxPages, PageBatchCodec.MaxPagesPerBatch);
    }

    public bool Add(long page)
    {
        int c = ChannelOf(page);
        long[] pages = _open[c] ??= ArrayPool<long>.Shared.Rent(PageBatchCodec.MaxPagesPerBatch);
        pages[_count[c]++] = page;
        return _count[c] < _maxPages || Dispatch(c);
    }

    public bool Finish()
    {
        for (int c = 0; c < _channels.Length; c++)
        {
            if (_count[c] > 0 && !Dispatch(c))
            {
                return false;
            }
        }
        return true;
    }

    public void Abandon()
    {
        for (int c = 0; c < _channels.Length; c++)
        {
            if (_open[c] is { } pages)
            {
                ArrayPool<long>.Shared.Return(pages);
                _open[c] = null;
                _count[c] = 0;
            }
        }
    }

    /// <summary>Hands one batch to its connection once the bandwidth limit allows it.</summary>
    private bool Dispatch(int c)
    {
        int count = _count[c];
        int taken = FrameHeader.Size + PageBatchCodec.MaxPayloadFor(count);
        if (!_loop.BeforeBatch(taken, _paced))
        {
            return false;
        }
        var work = new ChannelWork(ChannelWorkKind.Pages, _round, _open[c], count, taken);
        if (!Enqueue(c, work))
        {
            return false;
        }
        _open[c] = null;
        _count[c] = 0;
        return true;
    }

    private bool Enqueue(int c, ChannelWork work)
    {
        // A full queue means that connection is slower: wait, but keep the machine fed (a failure or a cancel ends the wait).
        while (!_channels[c].TryEnqueue(work, EnqueueSlice))
        {
            if (!_loop.Pump())
            {
                return false;
            }
        }
        return true;
    }

    public bool EndRound(int round)
    {
        for (int c = 0; c < _channels.Length; c++)
        {
            if (!Enqueue(c, new ChannelWork(ChannelWorkKind.RoundEnd, round)))
            {
                return false;
            }
        }
        return _loop.WaitUntil(() => _roundWritten.All(r => r >= round));
    }

    public bool Flush()
    {
        Array.Clear(_flushed);
        for (int c = 0; c < _channels.Length; c++)
        {
            if (!Enqueue(c, new ChannelWork(ChannelWorkKind.Flush, _round)))
            {
                return false;
            }
        }
        return _loop.WaitUntil(() => _flushed.All(f => f));
    }

    /// <summary>The migration thread learnt that connection <paramref name="channel"/> wrote its marker for <paramref name="round"/>.</summary>
    public void RoundWritten(int channel, long round) => _roundWritten[channel] = Math.Max(_roundWritten[channel], round);

    public void Flushed(int channel) => _flushed[channel] = true;

    public void Dispose()
    {
        Abandon();
        foreach (PageChannel c in _channels)
        {
            c.Dispose();
        }
    }
}
