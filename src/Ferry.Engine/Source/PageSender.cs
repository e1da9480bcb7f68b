using Ferry.Core.Paging;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

/// <summary>What the migration thread does around each page frame: pacing before it, counting after it.</summary>
internal interface IBatchGate
{
    /// <summary>
    /// A frame of <paramref name="frameBytes"/> is ready. Paced: wait out the bandwidth limit (while
    /// still reacting to the return path); otherwise take the bandwidth and go. False when the
    /// machine moved on meanwhile (a failure, a cancel, a broken link): the frame is dropped.
    /// </summary>
    bool BeforeBatch(int frameBytes, bool paced);

    /// <summary>The frame went out. False when the machine moved on (the caller stops sending).</summary>
    bool AfterBatch(int pages, int zeroPages, int firstTime, long wireBytes);
}

/// <summary>
/// The source's hot loop: fills page batch frames in place (page bytes go from guest RAM straight
/// into the frame buffer), hashes each page for the digest, marks zero pages, and remembers which
/// pages were ever sent. No allocation per page or per batch. One per connection that carries
/// pages (the control connection, each page connection's worker); they share one <see cref="SentPages"/>.
/// </summary>
internal sealed class PageSender
{
    private readonly GuestMemory _memory;
    private readonly SentPages _sent;
    private readonly IBatchGate _gate;
    private FrameWriter _writer;
    private int _round;
    private int _maxPages;
    private bool _paced;
    private int _count;
    private int _pos;
    private int _zeros;
    private int _firsts;

    private readonly TimeProvider _time;

    public PageSender(GuestMemory memory, FrameWriter writer, IBatchGate gate, TimeProvider time, SentPages sent)
    {
        _time = time;
        _memory = memory;
        _writer = writer;
        _gate = gate;
        _sent = sent;
    }

    /// <summary>Time spent hashing pages as they were sent, in the clock's ticks.</summary>
    public long HashTicks { get; private set; }

    public double HashMs => HashTicks * 1000.0 / _time.TimestampFrequency;

    /// <summary>Continues on a new connection (post-copy recovery).</summary>
    public void UseWriter(FrameWriter writer) => _writer = writer;

    /// <summary>Starts a series of batches for <paramref name="round"/>, at most <paramref name="maxPages"/> pages each.</summary>
    public void Begin(int round, bool paced, int maxPages = PageBatchCodec.MaxPagesPerBatch)
    {
        _round = round;
        _paced = paced;
        _maxPages = maxPages;
        _count = 0;
    }

    /// <summary>Adds a page; a full batch goes out at once. False when the machine moved on (stop sending).</summary>
    public bool Add(long page)
    {
        if (_count == 0)
        {
            _writer.Begin(FrameType.PageBatch);
            _pos = PageBatchCodec.HeaderSize;
            _zeros = 0;
            _firsts = 0;
        }
        Span<byte> entry = _writer.OpenPayload[_pos..];
        Span<byte> data = entry.Slice(PageBatchCodec.EntryHeaderSize, PageSize.Bytes);
        _memory.ReadPage(page, data);
        long t0 = _time.GetTimestamp();
        bool zero = !data.ContainsAnyExcept((byte)0);
        ulong hash = zero ? GuestMemory.ZeroPageHash : System.IO.Hashing.XxHash3.HashToUInt64(data);
        HashTicks += _time.GetTimestamp() - t0;
        _sent.Digest.Set(page, hash);
        if (zero)
        {
            PageBatchCodec.WriteEntryHeader(entry, page, PageEncoding.Zero);
            _pos += PageBatchCodec.EntryHeaderSize;
            _zeros++;
        }
        else
        {
            PageBatchCodec.WriteEntryHeader(entry, page, PageEncoding.Raw);
            _pos += PageBatchCodec.EntryHeaderSize + PageSize.Bytes;
        }
        if (_sent.MarkSent(page))
        {
            _firsts++;
        }
        _count++;
        return _count < _maxPages || Flush();
    }

    /// <summary>Sends the last, partial batch. False when the machine moved on.</summary>
    public bool Finish() => _count == 0 || Flush();

    /// <summary>Drops a batch begun but not sent (the machine moved on mid-batch).</summary>
    public void Abandon()
    {
        if (_count > 0)
        {
            _writer.DiscardOpenFrame();
            _count = 0;
        }
    }

    private bool Flush()
    {
        PageBatchCodec.WriteHeader(_writer.OpenPayload, _count, _round);
        int pages = _count;
        _count = 0;
        if (!_gate.BeforeBatch(FrameHeader.Size + _pos, _paced))
        {
            _writer.DiscardOpenFrame();
            return false;
        }
        long before = _writer.BytesWritten;
        _writer.Complete(_pos);
        return _gate.AfterBatch(pages, _zeros, _firsts, _writer.BytesWritten - before);
    }
}
