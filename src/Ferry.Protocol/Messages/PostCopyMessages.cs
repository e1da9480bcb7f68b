using System.Buffers.Binary;
using Ferry.Protocol.Framing;

namespace Ferry.Protocol.Messages;

/// <summary>PageRequest: <c>u64 page</c> (8 bytes). The page must be below the guest's page count.</summary>
public readonly record struct PageRequest(long Page)
{
    public const int Size = 8;

    public void Write(Span<byte> b) => BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)Page);

    public static PageRequest Read(ReadOnlySpan<byte> b, long guestPages)
    {
        RoundEnd.Expect(b, Size, "page request");
        ulong page = BinaryPrimitives.ReadUInt64LittleEndian(b);
        if (page >= (ulong)guestPages)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"page request for page {page}; the guest has {guestPages} pages");
        }
        return new PageRequest((long)page);
    }
}

/// <summary>PostCopyEnd: <c>u64 digest of every page as sent, u64 pages sent in total</c> (16 bytes).</summary>
public readonly record struct PostCopyEnd(ulong Digest, long PagesSent)
{
    public const int Size = 16;

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, Digest);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], (ulong)PagesSent);
    }

    public static PostCopyEnd Read(ReadOnlySpan<byte> b)
    {
        RoundEnd.Expect(b, Size, "post-copy end");
        return new PostCopyEnd(BinaryPrimitives.ReadUInt64LittleEndian(b), (long)BinaryPrimitives.ReadUInt64LittleEndian(b[8..]));
    }
}

/// <summary>
/// PendingPages: one chunk of the pending bitmap, <c>u32 first word, u32 word count, u64 × count</c>.
/// Word w covers pages 64·w … 64·w+63, bit i (least significant first) is page 64·w+i. Chunks
/// come in order and together cover every word of the guest's bitmap exactly once.
/// </summary>
public static class PendingPagesMessage
{
    public const int HeaderSize = 8;

    /// <summary>Words per frame: 512 KiB of bitmap, 2 GiB of guest RAM per frame.</summary>
    public const int MaxWordsPerFrame = 65_536;

    public static int Write(Span<byte> b, int firstWord, ReadOnlySpan<ulong> words)
    {
        if (words.Length > MaxWordsPerFrame)
        {
            throw new ArgumentOutOfRangeException(nameof(words), $"at most {MaxWordsPerFrame} words per frame");
        }
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)firstWord);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)words.Length);
        for (int i = 0; i < words.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(b[(HeaderSize + 8 * i)..], words[i]);
        }
        return HeaderSize + 8 * words.Length;
    }

    /// <summary>Fills <paramref name="target"/> with the bitmap's words from <paramref name="firstWord"/> on.</summary>
    public delegate void WordSource(int firstWord, Span<ulong> target);

    /// <summary>
    /// Writes a whole bitmap of <paramref name="totalWords"/> words as PendingPages frames, in order,
    /// straight into the writer's frame buffer (a bitmap always has at least one word, so at least
    /// one frame goes out).
    /// </summary>
    public static void WriteAll(FrameWriter writer, int totalWords, WordSource source)
    {
        Span<ulong> words = stackalloc ulong[256];
        for (int first = 0; first < totalWords;)
        {
            int n = Math.Min(totalWords - first, MaxWordsPerFrame);
            Span<byte> payload = writer.Begin(FrameType.PendingPages);
            BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)first);
            BinaryPrimitives.WriteUInt32LittleEndian(payload[4..], (uint)n);
            int pos = HeaderSize;
            for (int done = 0; done < n;)
            {
                int k = Math.Min(words.Length, n - done);
                source(first + done, words[..k]);
                for (int i = 0; i < k; i++)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(payload[(pos + 8 * i)..], words[i]);
                }
                pos += 8 * k;
                done += k;
            }
            writer.Complete(pos);
            first += n;
        }
    }

    /// <summary>Validates a chunk against the expected next word and the bitmap's size; returns its words (copied into <paramref name="words"/>).</summary>
    public static int Read(ReadOnlySpan<byte> b, int expectedFirstWord, int totalWords, Span<ulong> words)
    {
        if (b.Length < HeaderSize)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, "pending pages frame shorter than its header");
        }
        uint first = BinaryPrimitives.ReadUInt32LittleEndian(b);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(b[4..]);
        if (first != (uint)expectedFirstWord)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"pending pages chunk starts at word {first}; expected {expectedFirstWord}");
        }
        if (count == 0 || count > MaxWordsPerFrame || (ulong)first + count > (ulong)totalWords)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"pending pages chunk of {count} words at word {first}; the bitmap has {totalWords}");
        }
        if (b.Length != HeaderSize + 8L * count)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"pending pages chunk says {count} words but carries {b.Length - HeaderSize} bytes");
        }
        if (words.Length < count)
        {
            throw new ArgumentException("word buffer too small", nameof(words));
        }
        for (int i = 0; i < count; i++)
        {
            words[i] = BinaryPrimitives.ReadUInt64LittleEndian(b[(HeaderSize + 8 * i)..]);
        }
        return (int)count;
    }
}
