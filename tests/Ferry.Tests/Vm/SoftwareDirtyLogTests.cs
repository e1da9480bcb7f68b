using Ferry.Core.Paging;
using Ferry.Vm.Memory;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Vm;

public sealed class SoftwareDirtyLogTests
{
    private const int Page = 4096;

    private static long[] Pages(DirtyBitmap b)
    {
        var list = new List<long>();
        foreach (long p in b)
        {
            list.Add(p);
        }
        return [.. list];
    }

    [Fact]
    public void Reports_exactly_the_written_pages_and_not_the_read_ones()
    {
        using var m = new GuestMemory(256 * Page);
        m.Write(9, 0, [1]);                       // before Start: not reported
        using var log = new SoftwareDirtyLog(m);
        Assert.Equal("software", log.Backend);
        Assert.False(string.IsNullOrEmpty(log.Reason));
        log.Start();
        m.Write(1, 0, [1]);
        m.Write(5, 10, [1, 2]);
        m.Write(5, 20, [3]);
        m.Write(255, 4095, [4]);
        byte[] buf = new byte[Page];
        m.ReadPage(2, buf);
        m.ReadPage(9, buf);
        m.HashPage(3);
        _ = m.PageView(4);
        m.ComputeDigest();

        var into = new DirtyBitmap(m.PageCount);
        into.Set(100); // overwritten, not merged
        Assert.Equal(3, log.GetAndClear(into));
        Assert.Equal([1L, 5, 255], Pages(into));

        Assert.Equal(0, log.GetAndClear(into));
        Assert.Empty(Pages(into));

        m.Write(5, 0, [7]);
        Assert.Equal(1, log.GetAndClear(into));
        Assert.Equal([5L], Pages(into));
    }

    [Fact]
    public void Stopped_log_reports_nothing_and_a_restart_begins_afresh()
    {
        using var m = new GuestMemory(16 * Page);
        using var log = new SoftwareDirtyLog(m);
        var into = new DirtyBitmap(m.PageCount);
        Assert.Throws<InvalidOperationException>(() => log.GetAndClear(into));
        log.Start();
        Assert.Throws<InvalidOperationException>(() => log.Start());
        m.Write(1, 0, [1]);
        log.Stop();
        m.Write(2, 0, [1]);
        Assert.Throws<InvalidOperationException>(() => log.GetAndClear(into));
        log.Start();
        m.Write(3, 0, [1]);
        Assert.Equal(1, log.GetAndClear(into));
        Assert.Equal([3L], Pages(into));
        log.Stop();
        log.Stop(); // idempotent
    }

    [Fact]
    public void Installing_pages_at_the_destination_is_not_guest_dirtying()
    {
        using var m = new GuestMemory(16 * Page);
        using var log = new SoftwareDirtyLog(m);
        log.Start();
        m.InstallPage(4, new byte[Page]);
        m.InstallZeroPage(4);
        Assert.Equal(0, log.GetAndClear(new DirtyBitmap(m.PageCount)));
    }

    [Fact]
    public void Racing_writer_against_harvest_and_copy_ends_byte_identical()
    {
        // What pre-copy relies on: copy everything once, then repeatedly harvest and copy what was
        // dirtied, while a writer keeps writing; after the writer stops, one last harvest and copy
        // make the copy equal the source byte for byte.
        const int Pages = 2048;
        for (int trial = 0; trial < 3; trial++)
        {
            using var source = new GuestMemory(Pages * (long)Page);
            using var copy = new GuestMemory(Pages * (long)Page);
            using var log = new SoftwareDirtyLog(source);
            var dirty = new DirtyBitmap(Pages);
            byte[] buf = new byte[Page];

            void CopyPage(long p)
            {
                if (source.ReadPage(p, buf))
                {
                    copy.InstallPage(p, buf);
                }
            }

            log.Start();
            int stop = 0;
            long writes = 0;
            var writer = new Thread(() =>
            {
                var rng = new Random(trial);
                Span<byte> data = stackalloc byte[64];
                while (Volatile.Read(ref stop) == 0)
                {
                    rng.NextBytes(data);
                    int len = 1 + rng.Next(64);
                    source.Write(rng.Next(Pages), rng.Next(Page - len + 1), data[..len]);
                    Interlocked.Increment(ref writes);
                }
            }) { IsBackground = true };
            writer.Start();

            for (long p = 0; p < Pages; p++)
            {
                CopyPage(p);
            }
            // At least 40 rounds, and go on until the writer has really raced us (bounded).
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            for (int round = 0; round < 40 || (Volatile.Read(ref writes) < 20_000 && DateTime.UtcNow < deadline); round++)
            {
                log.GetAndClear(dirty);
                foreach (long p in dirty)
                {
                    CopyPage(p);
                }
            }
            Volatile.Write(ref stop, 1);
            Assert.True(writer.Join(TimeSpan.FromSeconds(30)), "writer did not stop");
            log.GetAndClear(dirty);
            foreach (long p in dirty)
            {
                CopyPage(p);
            }
            log.Stop();

            Assert.True(writes >= 20_000, $"only {writes} writes raced the copier: the test proved little");
            for (long p = 0; p < Pages; p++)
            {
                Assert.True(source.PageView(p).SequenceEqual(copy.PageView(p)), $"trial {trial}: page {p} differs");
            }
            Assert.Equal(source.ComputeDigest(), copy.ComputeDigest());
        }
    }
}
