using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Ferry.Native.Interop;

namespace Ferry.Native.Linux;

/// <summary>
/// PAGEMAP_SCAN on this process's /proc/self/pagemap: reports the pages of a uffd WP_ASYNC range
/// written since they were last protected, and re-protects them in the same call, so a write
/// that races the scan is either reported now or caught by the next scan. Not thread-safe: one
/// scan at a time per instance (it owns the output buffer).
/// </summary>
[SupportedOSPlatform("linux")]
public sealed unsafe class PagemapScanner : IDisposable
{
    /// <summary>page_region entries per call: 96 KiB. Adjacent written pages merge into one entry, and the scan loops anyway.</summary>
    public const int DefaultRegionCapacity = 4096;

    /// <summary>Bounds the retry loop of a call interrupted by a signal (it is restartable and rarely interrupted).</summary>
    private const int MaxInterruptedRetries = 100;

    private readonly SafeFileDescriptorHandle _pagemap;
    private readonly Libc.page_region[] _regions;

    public PagemapScanner(int regionCapacity = DefaultRegionCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(regionCapacity);
        _pagemap = SafeFileDescriptorHandle.Open(Libc.PROC_SELF_PAGEMAP, Libc.O_RDONLY);
        // Pinned so the kernel can be handed its address across calls without a fixed block per call.
        _regions = GC.AllocateArray<Libc.page_region>(regionCapacity, pinned: true);
    }

    /// <summary>
    /// Reports to <paramref name="sink"/> every page in [offset, offset + length) of the mapping
    /// written since its last protection, and write-protects those pages again. The range must be
    /// registered with a WP_ASYNC uffd (the kernel checks: EPERM otherwise). Returns the bytes reported.
    /// </summary>
    public long ScanWrittenAndProtect<TSink>(AnonymousMapping mapping, long offset, long length, ref TSink sink)
        where TSink : IWrittenRangeSink, allows ref struct
    {
        (ulong start, ulong len) = mapping.KernelRange(offset, length);
        ulong mappingBase = start - (ulong)offset;
        ulong end = start + len;
        long reported = 0;
        fixed (Libc.page_region* vec = _regions)
        {
            var arg = new Libc.pm_scan_arg
            {
                size = (ulong)sizeof(Libc.pm_scan_arg),
                flags = Libc.PM_SCAN_WP_MATCHING | Libc.PM_SCAN_CHECK_WPASYNC,
                start = start,
                end = end,
                vec = (ulong)vec,
                vec_len = (ulong)_regions.Length,
                category_mask = Libc.PAGE_IS_WRITTEN,
                return_mask = Libc.PAGE_IS_WRITTEN,
            };
            int interrupted = 0;
            while (true)
            {
                // SAFETY: arg is on this frame; vec is pinned and holds vec_len entries, which is all the kernel writes.
                int filled = Libc.ioctl(_pagemap, Libc.PAGEMAP_SCAN, &arg);
                if (filled < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Libc.EINTR && ++interrupted <= MaxInterruptedRetries)
                    {
                        continue;
                    }
                    throw new NativeCallException("ioctl(PAGEMAP_SCAN)", errno);
                }
                for (int i = 0; i < filled; i++)
                {
                    ref Libc.page_region r = ref vec[i];
                    sink.Add((long)(r.start - mappingBase), (long)(r.end - mappingBase));
                    reported += (long)(r.end - r.start);
                }
                // The kernel may stop early even with room left in vec; walk_end says where to resume.
                if (arg.walk_end >= end)
                {
                    break;
                }
                if (arg.walk_end <= arg.start && filled == 0)
                {
                    throw new InvalidOperationException($"PAGEMAP_SCAN made no progress at 0x{arg.start:x} (walk_end 0x{arg.walk_end:x})");
                }
                arg.start = arg.walk_end;
            }
        }
        return reported;
    }

    public void Dispose() => _pagemap.Dispose();
}
