using System.Buffers.Binary;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;

namespace Ferry.Tests.Support;

/// <summary>
/// A corrupting link on the write side of a stream: it follows the outgoing frames and, in the
/// <c>n</c>th page batch, flips one bit inside the first raw page's bytes, after the sender
/// computed the checksum. Reads pass through untouched. Bytes are forwarded a whole frame at a
/// time, which is what a receiver can use anyway.
/// </summary>
internal sealed class CorruptingStream : LinkDecorator
{
    private readonly int _targetBatch;
    private readonly int _bitInPage;
    private readonly MemoryStream _pending = new();
    private int _batchesSeen;

    /// <param name="targetBatch">1-based index of the page batch frame to corrupt.</param>
    /// <param name="bitInPage">Which bit of the page's 4096 bytes to flip.</param>
    public CorruptingStream(Stream inner, int targetBatch, int bitInPage = 12345)
        : base(inner)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(targetBatch, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(bitInPage);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(bitInPage, PageBatchCodec.PageBytes * 8);
        _targetBatch = targetBatch;
        _bitInPage = bitInPage;
    }

    /// <summary>True once the bit was flipped (a test that never corrupted anything proves nothing).</summary>
    public bool Corrupted { get; private set; }

    /// <summary>Page number whose bytes were corrupted, or -1.</summary>
    public long CorruptedPage { get; private set; } = -1;

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _pending.Write(buffer);
        byte[] all = _pending.GetBuffer();
        int length = (int)_pending.Length;
        int pos = 0;
        while (length - pos >= FrameHeader.Size)
        {
            int payload = (int)BinaryPrimitives.ReadUInt32LittleEndian(all.AsSpan(pos + 12));
            int total = FrameHeader.Size + payload;
            if (length - pos < total)
            {
                break;
            }
            if ((FrameType)all[pos + 8] == FrameType.PageBatch && ++_batchesSeen == _targetBatch)
            {
                FlipInFirstRawPage(all.AsSpan(pos + FrameHeader.Size, payload));
            }
            Inner.Write(all, pos, total);
            pos += total;
        }
        // Keep the incomplete tail for the next write.
        byte[] rest = all.AsSpan(pos, length - pos).ToArray();
        _pending.SetLength(0);
        _pending.Write(rest);
    }

    private void FlipInFirstRawPage(Span<byte> payload)
    {
        int count = (int)BinaryPrimitives.ReadUInt32LittleEndian(payload);
        int pos = PageBatchCodec.HeaderSize;
        for (int i = 0; i < count; i++)
        {
            ulong word = BinaryPrimitives.ReadUInt64LittleEndian(payload[pos..]);
            pos += PageBatchCodec.EntryHeaderSize;
            if ((PageEncoding)(word >> 56) == PageEncoding.Raw)
            {
                payload[pos + _bitInPage / 8] ^= (byte)(1 << (_bitInPage % 8));
                Corrupted = true;
                CorruptedPage = (long)(word & ((1UL << 56) - 1));
                return;
            }
        }
    }
}
