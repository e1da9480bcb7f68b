using System.Buffers.Binary;

namespace Ferry.Protocol.Messages;

/// <summary>
/// Page batch payload: <c>u32 count, u32 round</c>, then per page <c>u64 (encoding &lt;&lt; 56 | page number)</c>
/// followed by 4096 bytes for <see cref="PageEncoding.Raw"/> and nothing for <see cref="PageEncoding.Zero"/>.
/// </summary>
public static class PageBatchCodec
{
    public const int HeaderSize = 8;
    public const int EntryHeaderSize = 8;
    public const int PageBytes = 4096;
    public const int MaxPagesPerBatch = 256;
    private const ulong PageMask = (1UL << 56) - 1;

    /// <summary>Payload bytes needed for a batch of <paramref name="pages"/> raw pages (the worst case).</summary>
    public static int MaxPayloadFor(int pages) => HeaderSize + pages * (EntryHeaderSize + PageBytes);

    public static void WriteHeader(Span<byte> payload, int count, int round)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)count);
        BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], (uint)round);
    }

    public static void WriteEntryHeader(Span<byte> at, long page, PageEncoding encoding) =>
        BinaryPrimitives.WriteUInt64LittleEndian(at, ((ulong)encoding << 56) | ((ulong)page & PageMask));

    /// <summary>
    /// Checks a whole batch before any page of it is used: count in bounds, every entry's page
    /// number below <paramref name="guestPages"/>, known encodings, and no bytes missing or left over.
    /// </summary>
    public static int Validate(ReadOnlySpan<byte> payload, long guestPages, out int round)
    {
        if (payload.Length < HeaderSize)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page batch of {payload.Length} bytes is shorter than its header");
        }
        int count = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(payload), int.MaxValue);
        round = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(payload[4..]), int.MaxValue);
        if (count > MaxPagesPerBatch)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page batch declares {count} pages; at most {MaxPagesPerBatch} are allowed");
        }
        int pos = HeaderSize;
        for (int i = 0; i < count; i++)
        {
            if (payload.Length - pos < EntryHeaderSize)
            {
                throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page batch entry {i} of {count} is cut short");
            }
            ulong word = BinaryPrimitives.ReadUInt64LittleEndian(payload[pos..]);
            long page = (long)(word & PageMask);
            var encoding = (PageEncoding)(word >> 56);
            if (page >= guestPages)
            {
                throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page batch entry {i} names page {page}; the guest has {guestPages}");
            }
            pos += EntryHeaderSize;
            switch (encoding)
            {
                case PageEncoding.Raw:
                    if (payload.Length - pos < PageBytes)
                    {
                        throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page batch entry {i} (page {page}) is missing page bytes");
                    }
                    pos += PageBytes;
                    break;
                case PageEncoding.Zero:
                    break;
                default:
                    throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page batch entry {i} has unknown encoding {(byte)encoding}");
            }
        }
        if (pos != payload.Length)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page batch has {payload.Length - pos} unexpected trailing bytes");
        }
        return count;
    }

    /// <summary>Enumerates the entries of a batch that <see cref="Validate"/> accepted. No allocation.</summary>
    public static EntryEnumerator Entries(ReadOnlySpan<byte> payload) => new(payload);

    public readonly ref struct PageEntry
    {
        public PageEntry(long page, PageEncoding encoding, ReadOnlySpan<byte> data)
        {
            Page = page;
            Encoding = encoding;
            Data = data;
        }

        public long Page { get; }

        public PageEncoding Encoding { get; }

        public ReadOnlySpan<byte> Data { get; }
    }

    public ref struct EntryEnumerator
    {
        private readonly ReadOnlySpan<byte> _payload;
        private readonly int _count;
        private int _index;
        private int _pos;

        internal EntryEnumerator(ReadOnlySpan<byte> payload)
        {
            _payload = payload;
            _count = (int)BinaryPrimitives.ReadUInt32LittleEndian(payload);
            _index = 0;
            _pos = HeaderSize;
            Current = default;
        }

        public PageEntry Current { get; private set; }

        public readonly EntryEnumerator GetEnumerator() => this;

        public bool MoveNext()
        {
            if (_index >= _count)
            {
                return false;
            }
            ulong word = BinaryPrimitives.ReadUInt64LittleEndian(_payload[_pos..]);
            _pos += EntryHeaderSize;
            var encoding = (PageEncoding)(word >> 56);
            ReadOnlySpan<byte> data = default;
            if (encoding == PageEncoding.Raw)
            {
                data = _payload.Slice(_pos, PageBytes);
                _pos += PageBytes;
            }
            Current = new PageEntry((long)(word & PageMask), encoding, data);
            _index++;
            return true;
        }
    }
}
