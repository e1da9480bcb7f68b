using System.IO.Hashing;
using Ferry.Core.Paging;
using Ferry.Native;
using Ferry.Native.Linux;

namespace Ferry.Vm.Memory;

/// <summary>
/// Guest RAM: one native mapping of 4 KiB pages, never on the managed heap. Guest programs
/// write through <see cref="Write"/>, which records the page as populated and, while a software
/// dirty log is attached, as dirty. Under the kernel dirty log the kernel sees the write itself,
/// so Write does no tracking work at all. Pages never written are known to be zero and are never
/// touched by readers, which matters where a first touch costs tens of microseconds.
/// At a post-copy destination (<see cref="BeginPostCopy"/>) every write and read first checks
/// that the page has arrived and otherwise waits for it (<see cref="PostCopyPages"/>); the
/// receiver installs arriving pages with <see cref="InstallArrivedPage"/>, which never waits.
/// </summary>
public sealed partial class GuestMemory : IDisposable
{
    private readonly AnonymousMapping _mapping;
    private readonly DirtyBitmap _populated;
    private DirtyBitmap? _tracker;
    private int _tracking = (int)GuestWriteTracking.None;
    private Userfaultfd? _installFd;
    private PostCopyPages? _postCopy;
    private UserfaultFaultResolver? _resolver;
    // Kernel post-copy: pending pages that still hold an older copy from a live round. The kernel
    // cannot trap an access to a present page, so these are guarded by the present check instead.
    private DirtyBitmap? _staleCopies;

    public GuestMemory(long sizeBytes)
    {
        if (sizeBytes < PageSize.Bytes)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), "guest RAM must hold at least one page");
        }
        PageCount = PageSize.PagesFor(sizeBytes);
        SizeBytes = PageCount * PageSize.Bytes;
        _mapping = new AnonymousMapping(SizeBytes);
        _populated = new DirtyBitmap(PageCount);
    }

    public long SizeBytes { get; }

    public long PageCount { get; }

    /// <summary>Hash of a 4 KiB page of zeros: the value of every never-written page.</summary>
    public static ulong ZeroPageHash { get; } = XxHash3.HashToUInt64(new byte[PageSize.Bytes]);

    /// <summary>True once the page has been written or installed.</summary>
    public bool IsPopulated(long page)
    {
        CheckPage(page);
        return _populated[page];
    }

    public long PopulatedCount() => _populated.Count();

    /// <summary>A guest write of <paramref name="data"/> at <paramref name="offset"/> in <paramref name="page"/>.</summary>
    public void Write(long page, int offset, ReadOnlySpan<byte> data)
    {
        CheckPage(page);
        if ((uint)offset > PageSize.Bytes || data.Length > PageSize.Bytes - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), "write crosses the page boundary");
        }
        if (_installFd is not null)
        {
            WriteWhileRegistered(page, offset, data);
            return;
        }
        WaitIfMissing(page);
        // Order matters. Populated is set before the data (its first set is a full fence): the
        // kernel dirty log sees the data store itself, possibly before this method returns, and a
        // copier acting on that report must not find the page "never written" and skip it. The
        // software tracker is marked after the data, so a harvest that sees the bit sees the data.
        if (!_populated[page])
        {
            _populated.SetAtomic(page);
        }
        data.CopyTo(_mapping.GetSpan((page << PageSize.Shift) + offset, data.Length));
        Volatile.Read(ref _tracker)?.SetAtomic(page);
    }

    /// <summary>Copies a page out. Returns false, and zeros <paramref name="destination"/> without touching guest RAM, for a never-written page.</summary>
    public bool ReadPage(long page, Span<byte> destination)
    {
        CheckPage(page);
        if (destination.Length < PageSize.Bytes)
        {
            throw new ArgumentException("destination smaller than a page", nameof(destination));
        }
        if (KernelFaultsActive)
        {
            // The page may still be at the source: let the kernel fault fetch it, inside a native call.
            WaitIfStale(page);
            _mapping.NativeRead(page << PageSize.Shift, destination[..PageSize.Bytes]);
            return _populated[page];
        }
        WaitIfMissing(page);
        if (!_populated[page])
        {
            destination[..PageSize.Bytes].Clear();
            return false;
        }
        PageSpan(page).CopyTo(destination);
        return true;
    }

    /// <summary>Destination side: puts received bytes into a page (no dirty tracking; the VM is not running).</summary>
    public void InstallPage(long page, ReadOnlySpan<byte> content)
    {
        CheckPage(page);
        if (content.Length != PageSize.Bytes)
        {
            throw new ArgumentException("page content must be exactly one page", nameof(content));
        }
        if (_installFd is not null && !_populated[page])
        {
            // A plain store into a missing page of a MISSING-registered range would wait forever
            // for a resolver that does not exist: let the kernel install it instead.
            InstallRun(page, content);
            return;
        }
        Span<byte> target = _mapping.GetSpan(page << PageSize.Shift, PageSize.Bytes);
        if (!_populated[page])
        {
            // A managed block copy into a never-touched page faults twice (read, then write);
            // one store first makes it one fault (bench/README.md measured 1.3–1.8× faster installs).
            target[0] = content[0];
        }
        content.CopyTo(target);
        // Atomic: in post-copy the VM runs and its vCPUs set bits of the same words concurrently.
        _populated.SetAtomic(page);
    }

    /// <summary>Destination side: makes a page zero without populating it when it never held data.</summary>
    public void InstallZeroPage(long page)
    {
        CheckPage(page);
        if (_populated[page])
        {
            _mapping.GetSpan(page << PageSize.Shift, PageSize.Bytes).Clear();
        }
    }

    /// <summary>Hash of a page's current content (never-written pages hash as zeros without being touched).</summary>
    public ulong HashPage(long page)
    {
        CheckPage(page);
        if (KernelFaultsActive)
        {
            Span<byte> copy = stackalloc byte[PageSize.Bytes];
            return ReadPage(page, copy) ? XxHash3.HashToUInt64(copy) : ZeroPageHash;
        }
        WaitIfMissing(page);
        return _populated[page]
            ? XxHash3.HashToUInt64(PageSpan(page))
            : ZeroPageHash;
    }

    /// <summary>The digest of all of guest RAM, by the same scheme the migration uses (see <see cref="MemoryDigest"/>).</summary>
    public ulong ComputeDigest()
    {
        var digest = new MemoryDigest(PageCount);
        for (long p = 0; p < PageCount; p++)
        {
            if (_populated[p])
            {
                digest.Set(p, HashPage(p));
            }
        }
        return digest.Compute();
    }

    /// <summary>Read-only view of a page, for checks and tests.</summary>
    public ReadOnlySpan<byte> PageView(long page)
    {
        CheckPage(page);
        if (KernelFaultsActive)
        {
            // Fault the page in from a native call first; the span below then reads resident memory.
            WaitIfStale(page);
            Span<byte> one = stackalloc byte[1];
            _mapping.NativeRead(page << PageSize.Shift, one);
        }
        WaitIfMissing(page);
        return PageSpan(page);
    }

    /// <summary>Which dirty log, if any, is watching guest writes.</summary>
    internal GuestWriteTracking Tracking => (GuestWriteTracking)Volatile.Read(ref _tracking);

    /// <summary>The mapping that holds guest RAM, for the kernel dirty log's register/protect/scan calls.</summary>
    internal AnonymousMapping Mapping => _mapping;

    /// <summary>
    /// Claims guest writes for one dirty log. Two logs at once would each see only part of the
    /// truth (the software bitmap is harvested by whoever attached it), so a second claim fails.
    /// </summary>
    internal void ClaimTracking(GuestWriteTracking kind)
    {
        if (kind == GuestWriteTracking.None)
        {
            throw new ArgumentOutOfRangeException(nameof(kind), "claim a real tracking kind; release with ReleaseTracking");
        }
        int previous = Interlocked.CompareExchange(ref _tracking, (int)kind, (int)GuestWriteTracking.None);
        if (previous != (int)GuestWriteTracking.None)
        {
            throw new InvalidOperationException($"guest writes are already tracked by the {(GuestWriteTracking)previous} dirty log");
        }
    }

    internal void ReleaseTracking(GuestWriteTracking kind)
    {
        Interlocked.CompareExchange(ref _tracking, (int)GuestWriteTracking.None, (int)kind);
    }

    /// <summary>
    /// Attaches (or detaches, with null) the bitmap that guest writes mark. The process-wide
    /// barrier makes every write that did not see the new tracker visible before this returns,
    /// so a reader that starts afterwards sees its data.
    /// </summary>
    internal void AttachTracker(DirtyBitmap? bitmap)
    {
        Volatile.Write(ref _tracker, bitmap);
        Interlocked.MemoryBarrierProcessWide();
    }

    private ReadOnlySpan<byte> PageSpan(long page) => _mapping.GetReadOnlySpan(page << PageSize.Shift, PageSize.Bytes);

    private void CheckPage(long page)
    {
        if ((ulong)page >= (ulong)PageCount)
        {
            throw new ArgumentOutOfRangeException(nameof(page), page, $"guest has {PageCount} pages");
        }
    }

    public void Dispose()
    {
        ReleaseKernelFaults();
        DisableFastInstall();
        _mapping.Dispose();
    }
}
