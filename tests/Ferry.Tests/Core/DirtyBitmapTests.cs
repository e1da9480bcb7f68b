using CsCheck;
using Ferry.Core.Paging;

namespace Ferry.Tests.Core;

public sealed class DirtyBitmapTests
{
    private enum Op { Set, SetAtomic, Clear, SetAll, ClearAll, SetRange, Harvest, Union }

    private static readonly Gen<(int Pages, (Op Op, int A, int B)[] Ops)> Scripts =
        Gen.Int[0, 200].SelectMany(pages =>
            Gen.Select(Gen.Enum<Op>(), Gen.Int[0, Math.Max(0, pages - 1)], Gen.Int[0, pages])
                .Where((op, a, b) => pages > 0 || op is Op.SetAll or Op.ClearAll or Op.Harvest or Op.Union)
                .Array[0, 60]
                .Select(ops => (pages, ops)));

    private static void AssertSame(HashSet<long> model, DirtyBitmap bitmap)
    {
        Assert.Equal(model.Count, bitmap.Count());
        var listed = new List<long>();
        foreach (long p in bitmap)
        {
            listed.Add(p);
        }
        Assert.Equal(model.Order(), listed); // ascending, no duplicates
        for (long p = 0; p < bitmap.PageCount; p++)
        {
            Assert.Equal(model.Contains(p), bitmap[p]);
        }
    }

    [Fact]
    public void Behaves_like_a_set_of_pages()
    {
        Scripts.Sample((pages, ops) =>
        {
            var bitmap = new DirtyBitmap(pages);
            var model = new HashSet<long>();
            var rng = new Random(pages);
            foreach (var (op, a, b) in ops)
            {
                switch (op)
                {
                    case Op.Set:
                        bitmap.Set(a);
                        model.Add(a);
                        break;
                    case Op.SetAtomic:
                        bitmap.SetAtomic(a);
                        model.Add(a);
                        break;
                    case Op.Clear:
                        bitmap.Clear(a);
                        model.Remove(a);
                        break;
                    case Op.SetAll:
                        bitmap.SetAll();
                        model.UnionWith(Enumerable.Range(0, pages).Select(p => (long)p));
                        break;
                    case Op.ClearAll:
                        bitmap.ClearAll();
                        model.Clear();
                        break;
                    case Op.SetRange:
                        int lo = Math.Min(a, b), hi = Math.Max(a, b);
                        bitmap.SetRange(lo, hi);
                        model.UnionWith(Enumerable.Range(lo, hi - lo).Select(p => (long)p));
                        break;
                    case Op.Harvest:
                    {
                        var target = new DirtyBitmap(pages);
                        target.SetAll(); // overwritten, not merged
                        long moved = bitmap.HarvestInto(target);
                        Assert.Equal(model.Count, moved);
                        AssertSame(model, target);
                        model.Clear();
                        break;
                    }
                    case Op.Union:
                    {
                        var other = new DirtyBitmap(pages);
                        var otherModel = new HashSet<long>();
                        for (int i = 0; i < pages / 3; i++)
                        {
                            long p = rng.Next(pages);
                            other.Set(p);
                            otherModel.Add(p);
                        }
                        bitmap.UnionWith(other);
                        model.UnionWith(otherModel);
                        AssertSame(otherModel, other);
                        break;
                    }
                }
                AssertSame(model, bitmap);
            }
        }, iter: 500);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(1000)]
    public void SetAll_sets_exactly_the_guest_pages(int pages)
    {
        var bitmap = new DirtyBitmap(pages);
        bitmap.SetAll();
        Assert.Equal(pages, bitmap.Count());
        long last = -1, n = 0;
        foreach (long p in bitmap)
        {
            Assert.Equal(last + 1, p);
            last = p;
            n++;
        }
        Assert.Equal(pages, n);
    }

    [Fact]
    public void Harvest_into_a_bitmap_of_another_size_is_refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => new DirtyBitmap(100).HarvestInto(new DirtyBitmap(101)));
        Assert.Equal("target", ex.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DirtyBitmap(-1));
    }

    [Fact]
    public void Concurrent_setters_and_a_harvester_never_lose_or_duplicate_a_bit()
    {
        // Writers share every word (page p belongs to writer p % Writers) and each page is set
        // exactly once; the harvester runs meanwhile. Every page must come out of exactly one harvest.
        const int Writers = 3;
        const int Pages = 3 * 64 * 1024;
        for (int trial = 0; trial < 3; trial++)
        {
            var live = new DirtyBitmap(Pages);
            var union = new DirtyBitmap(Pages);
            var scratch = new DirtyBitmap(Pages);
            long harvested = 0;
            using var start = new Barrier(Writers + 1);
            int running = Writers;
            var writers = Enumerable.Range(0, Writers).Select(w => new Thread(() =>
            {
                start.SignalAndWait();
                for (long p = w; p < Pages; p += Writers)
                {
                    live.SetAtomic(p);
                }
                Interlocked.Decrement(ref running);
            }) { IsBackground = true }).ToArray();
            foreach (Thread t in writers)
            {
                t.Start();
            }
            start.SignalAndWait();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            do
            {
                Assert.True(DateTime.UtcNow < deadline, "writers did not finish within 30 s");
                harvested += live.HarvestInto(scratch);
                union.UnionWith(scratch);
            }
            while (Volatile.Read(ref running) > 0);
            foreach (Thread t in writers)
            {
                Assert.True(t.Join(TimeSpan.FromSeconds(30)), "writer thread did not end");
            }
            harvested += live.HarvestInto(scratch);
            union.UnionWith(scratch);

            Assert.Equal(Pages, union.Count());
            Assert.Equal(Pages, harvested);
            Assert.Equal(0, live.Count());
        }
    }
}
