using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Tests.Support;
using Ferry.Vm.Memory;
using Ferry.Vm.Programs;

namespace Ferry.Tests.Kernel;

/// <summary>
/// The pre-copy invariant with a live writer: harvest, then copy what was reported, round after
/// round while a guest thread keeps writing; after the writer stops, one last harvest and copy
/// must leave the copy byte-identical to guest RAM. A write lost between "reported" and "copied"
/// (or a page skipped as never-written while its data was landing) shows up as a difference.
/// </summary>
public sealed class RacingCopyTests
{
    private const int GuestPages = 512;
    private const int Writes = 40_000;
    private const int Repeats = 3;

    /// <summary>Copy rounds are capped so a broken harvest cannot spin forever; the writer ends long before.</summary>
    private const int MaxRounds = 1_000_000;

    [LinuxTheory(HostNeeds.KernelDirtyLog)]
    [InlineData("kernel")]
    [InlineData("software")]
    public void Harvest_then_copy_under_a_racing_writer_ends_byte_identical(string backend)
    {
        for (int repeat = 0; repeat < Repeats; repeat++)
        {
            using var memory = new GuestMemory((long)GuestPages * PageSize.Bytes);
            for (int p = 0; p < GuestPages; p += 2)
            {
                memory.Write(p, 0, [(byte)p, 1, 2, 3]);
            }
            byte[] copy = new byte[GuestPages * PageSize.Bytes];
            using IDirtyLog log = DirtyLogHarness.Create(backend, memory);
            log.Start();
            for (long p = 0; p < GuestPages; p++)
            {
                memory.ReadPage(p, copy.AsSpan((int)p * PageSize.Bytes, PageSize.Bytes));
            }

            ulong seed = (ulong)repeat + 17;
            var writer = new Thread(() => WriteRandomly(memory, seed)) { IsBackground = true, Name = "racing-writer" };
            var dirty = new DirtyBitmap(memory.PageCount);
            writer.Start();
            int rounds = 0;
            while (writer.IsAlive && rounds < MaxRounds)
            {
                CopyReported(log, memory, dirty, copy);
                rounds++;
            }
            Assert.True(writer.Join(TimeSpan.FromSeconds(60)), $"{backend} repeat {repeat}: writer did not finish {Writes} writes within 60 s");
            CopyReported(log, memory, dirty, copy);
            log.Stop();

            for (long p = 0; p < GuestPages; p++)
            {
                ReadOnlySpan<byte> expected = memory.IsPopulated(p) ? memory.PageView(p) : new byte[PageSize.Bytes];
                Assert.True(expected.SequenceEqual(copy.AsSpan((int)p * PageSize.Bytes, PageSize.Bytes)),
                    $"{backend} repeat {repeat}: page {p} differs after {rounds} copy rounds");
            }
        }
    }

    private static void CopyReported(IDirtyLog log, GuestMemory memory, DirtyBitmap dirty, byte[] copy)
    {
        log.GetAndClear(dirty);
        foreach (long p in dirty)
        {
            memory.ReadPage(p, copy.AsSpan((int)p * PageSize.Bytes, PageSize.Bytes));
        }
    }

    private static void WriteRandomly(GuestMemory memory, ulong seed)
    {
        Span<byte> data = stackalloc byte[8];
        for (int i = 0; i < Writes; i++)
        {
            long page = SplitMix64.NextBelow(ref seed, GuestPages);
            int offset = (int)SplitMix64.NextBelow(ref seed, PageSize.Bytes - 8 + 1);
            BitConverter.TryWriteBytes(data, SplitMix64.Next(ref seed));
            memory.Write(page, offset, data);
        }
    }
}
