using Ferry.Core.Paging;

namespace Ferry.Tests.Core;

/// <summary>The push order of post-copy: sequential before any fault, outward from each fault after.</summary>
public sealed class PrePagingCursorTests
{
    private static DirtyBitmap AllPending(long pages)
    {
        var b = new DirtyBitmap(pages);
        b.SetAll();
        return b;
    }

    /// <summary>Takes <paramref name="n"/> pages the way the engine does: each returned page is sent (cleared).</summary>
    private static List<long> Take(PrePagingCursor cursor, DirtyBitmap pending, int n)
    {
        var order = new List<long>();
        while (order.Count < n && cursor.TryNext(out long p, out _))
        {
            pending.Clear(p);
            order.Add(p);
        }
        return order;
    }

    [Fact]
    public void Without_a_fault_the_push_is_sequential()
    {
        var pending = AllPending(10);
        var cursor = new PrePagingCursor(pending);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], Take(cursor, pending, 100));
        Assert.False(cursor.TryNext(out _, out _));
    }

    [Fact]
    public void After_a_fault_the_push_goes_outward_from_it()
    {
        var pending = AllPending(200);
        var cursor = new PrePagingCursor(pending);
        pending.Clear(100);                     // the faulted page went on demand
        cursor.Recentre(100);
        Assert.Equal([101, 99, 102, 98, 103, 97], Take(cursor, pending, 6));
    }

    [Fact]
    public void A_new_fault_moves_the_centre()
    {
        var pending = AllPending(200);
        var cursor = new PrePagingCursor(pending);
        pending.Clear(100);
        cursor.Recentre(100);
        Take(cursor, pending, 4);               // 101, 99, 102, 98
        pending.Clear(150);
        cursor.Recentre(150);
        Assert.Equal([151, 149, 152, 148], Take(cursor, pending, 4));
    }

    [Fact]
    public void Pages_no_longer_pending_are_skipped_and_one_exhausted_side_leaves_the_other()
    {
        var pending = new DirtyBitmap(300);
        foreach (long p in new long[] { 3, 5, 130, 131, 250 })
        {
            pending.Set(p);
        }
        var cursor = new PrePagingCursor(pending);
        cursor.Recentre(129);
        Assert.Equal([130, 5, 131, 3, 250], Take(cursor, pending, 100));
        Assert.False(cursor.TryNext(out _, out _));
    }

    [Fact]
    public void Every_pending_page_is_returned_exactly_once_whatever_the_faults()
    {
        var pending = AllPending(1000);
        var cursor = new PrePagingCursor(pending);
        var seen = new HashSet<long>();
        var rng = new Random(5);
        while (true)
        {
            if (rng.Next(10) == 0)
            {
                long fault = rng.Next(1000);
                if (pending[fault])
                {
                    pending.Clear(fault);
                    Assert.True(seen.Add(fault));
                }
                cursor.Recentre(fault);
            }
            if (!cursor.TryNext(out long p, out _))
            {
                break;
            }
            pending.Clear(p);
            Assert.True(seen.Add(p), $"page {p} returned twice");
        }
        Assert.Equal(1000, seen.Count);
    }

    [Fact]
    public void Only_the_window_after_a_fault_counts_as_pre_paged()
    {
        var pending = AllPending(100);
        var cursor = new PrePagingCursor(pending, window: 3);
        Assert.True(cursor.TryNext(out long first, out bool pre));
        pending.Clear(first);
        Assert.False(pre);                      // no fault yet: plain push
        cursor.Recentre(50);
        var flags = new List<bool>();
        for (int i = 0; i < 5; i++)
        {
            Assert.True(cursor.TryNext(out long p, out bool prePaged));
            pending.Clear(p);
            flags.Add(prePaged);
        }
        Assert.Equal([true, true, true, false, false], flags);
    }

    [Fact]
    public void NextSet_and_PreviousSet_cross_word_boundaries()
    {
        var b = new DirtyBitmap(200);
        b.Set(0);
        b.Set(64);
        b.Set(199);
        Assert.Equal(0, b.NextSet(0));
        Assert.Equal(64, b.NextSet(1));
        Assert.Equal(199, b.NextSet(65));
        Assert.Equal(-1, b.NextSet(200));
        Assert.Equal(199, b.PreviousSet(500));
        Assert.Equal(64, b.PreviousSet(198));
        Assert.Equal(0, b.PreviousSet(63));
        Assert.Equal(-1, b.PreviousSet(-1));
    }
}
