using System.IO.Hashing;
using Ferry.Native;
using Ferry.Tests.Support;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Vm;

/// <summary>Tests that measure the whole process's memory run alone, after everything else.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessMemoryCollection
{
    public const string Name = "process memory";
}

public sealed class GuestMemoryTests
{
    private const int Page = 4096;

    private static byte[] Pattern(int seed)
    {
        byte[] b = new byte[Page];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public void Size_is_rounded_up_to_whole_pages()
    {
        using var m = new GuestMemory(3 * Page + 1);
        Assert.Equal(4, m.PageCount);
        Assert.Equal(4 * Page, m.SizeBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GuestMemory(Page - 1));
    }

    [Theory]
    [InlineData(-1L)]
    [InlineData(16L)]
    [InlineData(long.MaxValue)]
    [InlineData(long.MinValue)]
    public void Page_numbers_outside_the_guest_are_refused_everywhere(long page)
    {
        using var m = new GuestMemory(16 * Page);
        byte[] buf = new byte[Page];
        Assert.Throws<ArgumentOutOfRangeException>(() => m.IsPopulated(page));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Write(page, 0, buf.AsSpan(0, 8)));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.ReadPage(page, buf));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.InstallPage(page, buf));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.InstallZeroPage(page));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.HashPage(page));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.PageView(page));
        Assert.Equal(0, m.PopulatedCount());
    }

    [Theory]
    [InlineData(-1, 1)]
    [InlineData(4089, 8)]
    [InlineData(4096, 1)]
    [InlineData(0, 4097)]
    [InlineData(int.MaxValue, 1)]
    public void Writes_crossing_the_page_boundary_are_refused(int offset, int length)
    {
        using var m = new GuestMemory(2 * Page);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Write(0, offset, new byte[length]));
        Assert.False(m.IsPopulated(0));
        Assert.All(m.PageView(1).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Writes_up_to_the_page_end_are_allowed()
    {
        using var m = new GuestMemory(2 * Page);
        m.Write(0, 4088, [1, 2, 3, 4, 5, 6, 7, 8]);
        m.Write(1, 0, Pattern(1));
        Assert.Equal(8, m.PageView(0)[^1]);
        Assert.Equal(Pattern(1), m.PageView(1).ToArray());
    }

    [Fact]
    public void Short_buffers_are_refused()
    {
        using var m = new GuestMemory(2 * Page);
        Assert.Throws<ArgumentException>(() => m.ReadPage(0, new byte[Page - 1]));
        Assert.Throws<ArgumentException>(() => m.InstallPage(0, new byte[Page - 1]));
        Assert.Throws<ArgumentException>(() => m.InstallPage(0, new byte[Page + 1]));
    }

    [Fact]
    public void Never_written_pages_read_as_zero_without_being_populated()
    {
        using var m = new GuestMemory(64 * Page);
        byte[] buf = new byte[Page];
        Array.Fill(buf, (byte)0xAA);
        Assert.False(m.ReadPage(10, buf));
        Assert.All(buf, b => Assert.Equal(0, b));
        Assert.Equal(GuestMemory.ZeroPageHash, m.HashPage(10));
        m.InstallZeroPage(11);
        Assert.False(m.IsPopulated(10));
        Assert.False(m.IsPopulated(11));
        Assert.Equal(0, m.PopulatedCount());

        m.Write(10, 100, [9]);
        Array.Fill(buf, (byte)0xAA);
        Assert.True(m.ReadPage(10, buf));
        Assert.Equal(9, buf[100]);
        Assert.Equal(1, buf.Count(b => b != 0));
        Assert.True(m.IsPopulated(10));
        Assert.Equal(1, m.PopulatedCount());
    }

    [Fact]
    public void Zero_page_install_clears_a_populated_page()
    {
        using var m = new GuestMemory(4 * Page);
        m.InstallPage(2, Pattern(2));
        Assert.Equal(XxHash3.HashToUInt64(Pattern(2)), m.HashPage(2));
        m.InstallZeroPage(2);
        Assert.All(m.PageView(2).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(GuestMemory.ZeroPageHash, m.HashPage(2));
    }

    [Fact]
    public void Page_hashes_and_the_digest_agree_with_the_content()
    {
        using var a = new GuestMemory(256 * Page);
        using var b = new GuestMemory(256 * Page);
        Assert.Equal(GuestMemory.ZeroPageHash, XxHash3.HashToUInt64(new byte[Page]));
        Assert.Equal(a.ComputeDigest(), b.ComputeDigest());

        var expected = new MemoryDigest(256);
        foreach (int p in new[] { 0, 17, 100, 255 })
        {
            a.Write(p, 0, Pattern(p));
            b.InstallPage(p, Pattern(p));                  // same content by the other path
            Assert.Equal(XxHash3.HashToUInt64(Pattern(p)), a.HashPage(p));
            expected.Set(p, XxHash3.HashToUInt64(Pattern(p)));
        }
        Assert.Equal(expected.Compute(), a.ComputeDigest());
        Assert.Equal(a.ComputeDigest(), b.ComputeDigest());

        // Content, not history: a page written with zeros digests like one never written.
        a.Write(50, 0, new byte[Page]);
        Assert.Equal(expected.Compute(), a.ComputeDigest());

        // One byte anywhere changes it.
        b.Write(255, 4095, [(byte)(Pattern(255)[4095] ^ 1)]);
        Assert.NotEqual(a.ComputeDigest(), b.ComputeDigest());
        Assert.Equal("00000000000000ff", MemoryDigest.Format(0xff));
    }

    [Fact]
    public void Use_after_dispose_is_refused()
    {
        var m = new GuestMemory(4 * Page);
        m.Write(0, 0, [1]);
        m.Dispose();
        Assert.Throws<ObjectDisposedException>(() => m.Write(1, 0, [1]));
        Assert.Throws<ObjectDisposedException>(() => m.ReadPage(0, new byte[Page]));
        m.Dispose(); // idempotent
    }
}

[Collection(ProcessMemoryCollection.Name)]
public sealed class GuestMemoryFootprintTests
{
    private static long RssBytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException("no VmRSS line in /proc/self/status");
    }

    [Fact]
    public void Sixteen_gib_guest_costs_nothing_until_touched()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // RSS is read from /proc; the lazy mapping is the Linux backend's promise.
        }
        const long Size = 16L << 30;
        GC.Collect();
        long mappedBefore = AnonymousMapping.TotalMappedBytes;
        long rssBefore = RssBytes();
        using (var m = new GuestMemory(Size))
        {
            Assert.Equal(Size / 4096, m.PageCount);
            Assert.Equal(mappedBefore + Size, AnonymousMapping.TotalMappedBytes);

            // Touch a few pages at both ends, and read or hash many never-written ones.
            byte[] page = new byte[4096];
            m.Write(0, 0, [1]);
            m.Write(m.PageCount - 1, 4095, [2]);
            for (long p = 1; p < m.PageCount - 1; p += 97)
            {
                Assert.Equal(GuestMemory.ZeroPageHash, m.HashPage(p));
            }
            for (long p = 1; p < m.PageCount - 1; p += 1021)
            {
                Assert.False(m.ReadPage(p, page));
            }
            Assert.Equal(2, m.PopulatedCount());
            Assert.Equal(2, m.PageView(m.PageCount - 1)[4095]);

            long grown = RssBytes() - rssBefore;
            Assert.True(grown < 64L << 20, $"RSS grew by {grown >> 20} MiB for an untouched 16 GiB guest");
        }
        Assert.Equal(mappedBefore, AnonymousMapping.TotalMappedBytes);
    }
}
