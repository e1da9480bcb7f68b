using System.Diagnostics;
using Ferry.Core.Paging;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

/// <summary>Sending pages: the bandwidth pacer and the batch builder every path (rounds, switchover, post-copy) uses.</summary>
public sealed partial class SourceMigration
{
    /// <summary>Waits out <paramref name="bytes"/> worth of the bandwidth limit, if there is one.</summary>
    private void Pace(int bytes, CancellationToken ct)
    {
        if (_bucket is null)
        {
            return;
        }
        TimeSpan wait = _bucket.Take(bytes, Seconds(_start, Stopwatch.GetTimestamp()));
        if (wait > TimeSpan.Zero && ct.WaitHandle.WaitOne(wait))
        {
            ct.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Fills page batch frames in place: page bytes go from guest RAM straight into the frame buffer.</summary>
    private ref struct BatchBuilder
    {
        private readonly SourceMigration _owner;
        private readonly int _round;
        private readonly int _maxPages;
        private readonly bool _owe;
        private Span<byte> _payload;
        private int _count;
        private int _pos;

        /// <param name="owe">Post-copy: take the bandwidth from the bucket without waiting, and let the next paced send wait the debt out. Answers to page requests go this way so a faulting vCPU never waits for the pacing, and so does a push batch once the bucket was found clear (SourceMigration.PushMayGo).</param>
        public BatchBuilder(SourceMigration owner, int round, int maxPages = PageBatchCodec.MaxPagesPerBatch, bool owe = false)
        {
            _owner = owner;
            _round = round;
            _maxPages = maxPages;
            _owe = owe;
            _payload = default;
            _count = 0;
            _pos = 0;
        }

        public void Add(long page, CancellationToken ct)
        {
            if (_count == 0)
            {
                _payload = _owner._writer.Begin(FrameType.PageBatch);
                _pos = PageBatchCodec.HeaderSize;
            }
            SourceMigration o = _owner;
            Span<byte> entry = _payload[_pos..];
            Span<byte> data = entry.Slice(PageBatchCodec.EntryHeaderSize, PageSize.Bytes);
            o._memory.ReadPage(page, data);
            long t0 = Stopwatch.GetTimestamp();
            bool zero = !data.ContainsAnyExcept((byte)0);
            ulong hash = zero ? GuestMemory.ZeroPageHash : System.IO.Hashing.XxHash3.HashToUInt64(data);
            o._hashTicks += Stopwatch.GetTimestamp() - t0;
            o._digest.Set(page, hash);
            if (zero)
            {
                PageBatchCodec.WriteEntryHeader(entry, page, PageEncoding.Zero);
                _pos += PageBatchCodec.EntryHeaderSize;
                o._zeroSent++;
            }
            else
            {
                PageBatchCodec.WriteEntryHeader(entry, page, PageEncoding.Raw);
                _pos += PageBatchCodec.EntryHeaderSize + PageSize.Bytes;
            }
            if (!o._sentEver[page])
            {
                o._sentEver.Set(page);
                o._uniqueSent++;
            }
            o._pagesSent++;
            o._roundSent++;
            _count++;
            if (_count == _maxPages)
            {
                Flush(ct);
            }
        }

        public void Finish(CancellationToken ct)
        {
            if (_count > 0)
            {
                Flush(ct);
            }
        }

        private void Flush(CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            PageBatchCodec.WriteHeader(_payload, _count, _round);
            if (_owe)
            {
                _owner._bucket?.Take(FrameHeader.Size + _pos, _owner.Seconds(_owner._start, Stopwatch.GetTimestamp()));
            }
            else
            {
                _owner.Pace(FrameHeader.Size + _pos, ct);
            }
            _owner._writer.Complete(_pos);
            _count = 0;
            _owner.PublishProgress();
        }
    }
}
