using System.Runtime.InteropServices;
using Ferry.Native.Interop;

namespace Ferry.Native;

/// <summary>
/// A private anonymous mapping: address space reserved at once, physical pages only on first
/// touch (MAP_NORESERVE), so a 16 GiB guest costs nothing until written. Off Linux it falls back
/// to a zeroed native allocation, which the allocator also backs lazily for large sizes.
/// </summary>
public sealed unsafe class AnonymousMapping : IDisposable
{
    private static long s_mappedBytes;
    private byte* _base;
    private readonly bool _mmapped;

    public AnonymousMapping(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
        if (OperatingSystem.IsLinux())
        {
            void* p = Libc.mmap(null, (nuint)length, Libc.PROT_READ | Libc.PROT_WRITE,
                Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
            if (p == Libc.MAP_FAILED)
            {
                throw new NativeCallException("mmap", Marshal.GetLastPInvokeError());
            }
            _base = (byte*)p;
            _mmapped = true;
        }
        else
        {
            _base = (byte*)NativeMemory.AllocZeroed((nuint)length);
        }
        Interlocked.Add(ref s_mappedBytes, length);
    }

    /// <summary>Bytes currently mapped by all live mappings of this process.</summary>
    public static long TotalMappedBytes => Interlocked.Read(ref s_mappedBytes);

    public long Length { get; }

    public bool IsKernelMapping => _mmapped;

    public byte* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            return _base;
        }
    }

    /// <summary>A writable view of <paramref name="length"/> bytes at <paramref name="offset"/>, checked against the mapping's bounds.</summary>
    public Span<byte> GetSpan(long offset, int length)
    {
        CheckRange(offset, length);
        return new Span<byte>(Pointer + offset, length);
    }

    /// <summary>A read-only view of <paramref name="length"/> bytes at <paramref name="offset"/>, checked against the mapping's bounds.</summary>
    public ReadOnlySpan<byte> GetReadOnlySpan(long offset, int length)
    {
        CheckRange(offset, length);
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    /// <summary>
    /// Copies <paramref name="data"/> into the mapping with libc memcpy inside a P/Invoke. Slower
    /// than a span copy for small writes (one GC transition per call) but the only safe way for
    /// managed code to touch a userfaultfd MISSING range whose resolver is managed: a fault inside
    /// the call blocks a thread the GC does not wait for (kernel.md, Probe 2, rule c).
    /// </summary>
    public void NativeWrite(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, data.Length);
        fixed (byte* src = data)
        {
            Libc.memcpy(Pointer + offset, src, (nuint)data.Length);
        }
    }

    /// <summary>Copies bytes out of the mapping inside a P/Invoke; see <see cref="NativeWrite"/> for why.</summary>
    public void NativeRead(long offset, Span<byte> destination)
    {
        CheckRange(offset, destination.Length);
        fixed (byte* dst = destination)
        {
            Libc.memcpy(dst, Pointer + offset, (nuint)destination.Length);
        }
    }

    /// <summary>
    /// The virtual address range of [offset, offset + length) for a kernel call on this mapping:
    /// checked against the bounds and the kernel page size, which every uffd and pagemap range must respect.
    /// </summary>
    internal (ulong Start, ulong Length) KernelRange(long offset, long length)
    {
        CheckRange(offset, length);
        long pageMask = Environment.SystemPageSize - 1;
        if ((offset & pageMask) != 0 || (length & pageMask) != 0 || length == 0)
        {
            throw new ArgumentException($"range [{offset}, +{length}) is not a non-empty whole number of {Environment.SystemPageSize}-byte pages", nameof(offset));
        }
        if (!_mmapped)
        {
            throw new PlatformNotSupportedException("kernel page-table calls need an mmap'ed mapping (Linux only)");
        }
        return ((ulong)(Pointer + offset), (ulong)length);
    }

    /// <summary>Drops the physical pages of a range; they read back as zeros.</summary>
    public void Discard(long offset, long length)
    {
        CheckRange(offset, length);
        if (_mmapped)
        {
            if (Libc.madvise(_base + offset, (nuint)length, Libc.MADV_DONTNEED) != 0)
            {
                throw new NativeCallException("madvise(MADV_DONTNEED)", Marshal.GetLastPInvokeError());
            }
        }
        else
        {
            NativeMemory.Clear(_base + offset, (nuint)length);
        }
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"range [{offset}, +{length}) is outside the {Length}-byte mapping");
        }
    }

    public void Dispose()
    {
        int errno = Release();
        GC.SuppressFinalize(this);
        if (errno != 0)
        {
            throw new NativeCallException("munmap", errno);
        }
    }

    ~AnonymousMapping()
    {
        // A finalizer must not throw; a failed munmap here only leaks address space.
        Release();
    }

    private int Release()
    {
        byte* p = _base;
        if (p == null)
        {
            return 0;
        }
        _base = null;
        if (_mmapped)
        {
            // Account only after the kernel released the range, so the counter never under-reports.
            if (Libc.munmap(p, (nuint)Length) != 0)
            {
                return Marshal.GetLastPInvokeError();
            }
        }
        else
        {
            NativeMemory.Free(p);
        }
        Interlocked.Add(ref s_mappedBytes, -Length);
        return 0;
    }
}
