using System.Numerics;

namespace Ferry.Core.Paging;

/// <summary>
/// One bit per guest page. Setting is atomic so guest threads may mark pages while another
/// thread harvests them with <see cref="HarvestInto"/>; everything else is single-threaded.
/// </summary>
public sealed class DirtyBitmap
{
    private readonly ulong[] _words;

    public DirtyBitmap(long pageCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pageCount);
        PageCount = pageCount;
        _words = new ulong[(pageCount + 63) >> 6];
    }

    public long PageCount { get; }

    public bool this[long page] => (Volatile.Read(ref _words[page >> 6]) & (1UL << (int)(page & 63))) != 0;

    /// <summary>Atomically sets the bit; a full fence, which the software dirty log relies on.</summary>
    public void SetAtomic(long page)
    {
        ref ulong word = ref _words[page >> 6];
        ulong bit = 1UL << (int)(page & 63);
        Interlocked.Or(ref word, bit);
    }

    /// <summary>Sets the bit without synchronisation (single-threaded owners only).</summary>
    public void Set(long page) => _words[page >> 6] |= 1UL << (int)(page & 63);

    public void Clear(long page) => _words[page >> 6] &= ~(1UL << (int)(page & 63));

    public void SetAll()
    {
        Array.Fill(_words, ulong.MaxValue);
        int tail = (int)(PageCount & 63);
        if (tail != 0)
        {
            _words[^1] = (1UL << tail) - 1;
        }
    }

    public void ClearAll() => Array.Clear(_words);

    public long Count()
    {
        long n = 0;
        foreach (ulong w in _words)
        {
            n += BitOperations.PopCount(w);
        }
        return n;
    }

    /// <summary>
    /// Moves every set bit into <paramref name="target"/> (overwriting it) and clears this
    /// bitmap, word by word with atomic exchanges, so a concurrent <see cref="SetAtomic"/> lands
    /// either in this harvest or in the next one and is never lost. Returns the pages moved.
    /// </summary>
    public long HarvestInto(DirtyBitmap target)
    {
        if (target.PageCount != PageCount)
        {
            throw new ArgumentException("Bitmaps differ in size.", nameof(target));
        }
        long n = 0;
        for (int i = 0; i < _words.Length; i++)
        {
            ulong w = Volatile.Read(ref _words[i]) == 0 ? 0 : Interlocked.Exchange(ref _words[i], 0);
            target._words[i] = w;
            n += BitOperations.PopCount(w);
        }
        return n;
    }

    /// <summary>ORs <paramref name="other"/> into this bitmap (single-threaded).</summary>
    public void UnionWith(DirtyBitmap other)
    {
        for (int i = 0; i < _words.Length; i++)
        {
            _words[i] |= other._words[i];
        }
    }

    /// <summary>Sets bits for the page ranges given as [start, end) pairs (single-threaded).</summary>
    public void SetRange(long start, long end)
    {
        if (start < 0 || end > PageCount || start > end)
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"range [{start}, {end}) is outside [0, {PageCount})");
        }
        // A word at a time: the kernel dirty log fills the bitmap from page ranges, and its final
        // harvest runs inside the downtime.
        while (start < end)
        {
            int bit = (int)(start & 63);
            int count = (int)Math.Min(64 - bit, end - start);
            ulong mask = count == 64 ? ulong.MaxValue : ((1UL << count) - 1) << bit;
            _words[start >> 6] |= mask;
            start += count;
        }
    }

    /// <summary>The first set page at or after <paramref name="from"/>, or -1 (skips clear words whole).</summary>
    public long NextSet(long from)
    {
        if (from < 0)
        {
            from = 0;
        }
        if (from >= PageCount)
        {
            return -1;
        }
        int index = (int)(from >> 6);
        ulong word = Volatile.Read(ref _words[index]) & (ulong.MaxValue << (int)(from & 63));
        while (word == 0)
        {
            if (++index >= _words.Length)
            {
                return -1;
            }
            word = Volatile.Read(ref _words[index]);
        }
        return ((long)index << 6) + BitOperations.TrailingZeroCount(word);
    }

    /// <summary>The last set page at or before <paramref name="from"/>, or -1.</summary>
    public long PreviousSet(long from)
    {
        if (from < 0)
        {
            return -1;
        }
        if (from >= PageCount)
        {
            from = PageCount - 1;
        }
        int index = (int)(from >> 6);
        int bit = (int)(from & 63);
        ulong word = Volatile.Read(ref _words[index]) & (bit == 63 ? ulong.MaxValue : (1UL << (bit + 1)) - 1);
        while (word == 0)
        {
            if (--index < 0)
            {
                return -1;
            }
            word = Volatile.Read(ref _words[index]);
        }
        return ((long)index << 6) + 63 - BitOperations.LeadingZeroCount(word);
    }

    /// <summary>Number of 64-page words, for copying the bitmap onto the wire in chunks.</summary>
    public int WordCount => _words.Length;

    /// <summary>Copies words starting at <paramref name="firstWord"/> into <paramref name="target"/>.</summary>
    public void CopyWordsTo(int firstWord, Span<ulong> target) => _words.AsSpan(firstWord, target.Length).CopyTo(target);

    /// <summary>ORs words into the bitmap starting at <paramref name="firstWord"/>; bits beyond the page count are ignored.</summary>
    public void OrWords(int firstWord, ReadOnlySpan<ulong> words)
    {
        for (int i = 0; i < words.Length; i++)
        {
            _words[firstWord + i] |= words[i];
        }
        int tail = (int)(PageCount & 63);
        if (tail != 0 && firstWord + words.Length == _words.Length)
        {
            _words[^1] &= (1UL << tail) - 1;
        }
    }

    /// <summary>Atomically clears the bit; returns true when this call cleared it.</summary>
    public bool ClearAtomic(long page)
    {
        ref ulong word = ref _words[page >> 6];
        ulong bit = 1UL << (int)(page & 63);
        return (Interlocked.And(ref word, ~bit) & bit) != 0;
    }

    /// <summary>Atomically sets the bit; returns true when this call set it (it was clear before).</summary>
    public bool TrySetAtomic(long page)
    {
        ref ulong word = ref _words[page >> 6];
        ulong bit = 1UL << (int)(page & 63);
        return (Interlocked.Or(ref word, bit) & bit) == 0;
    }

    /// <summary>Enumerates set pages in ascending order without allocating per page.</summary>
    public SetBitEnumerator GetEnumerator() => new(_words);

    public struct SetBitEnumerator
    {
        private readonly ulong[] _words;
        private int _index;
        private ulong _current;

        internal SetBitEnumerator(ulong[] words)
        {
            _words = words;
            _index = -1;
            _current = 0;
            Current = -1;
        }

        public long Current { get; private set; }

        public bool MoveNext()
        {
            while (_current == 0)
            {
                if (++_index >= _words.Length)
                {
                    return false;
                }
                _current = _words[_index];
            }
            int bit = BitOperations.TrailingZeroCount(_current);
            _current &= _current - 1;
            Current = ((long)_index << 6) + bit;
            return true;
        }
    }
}
