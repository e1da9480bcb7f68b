using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

/// <summary>
/// PAGEMAP_SCAN (linux/fs.h, Linux 6.7+), issued on an fd of /proc/self/pagemap. The Debian 12
/// headers predate it, so NativeLayoutTests checks these against a C definition of the structs.
/// </summary>
internal static partial class Libc
{
    internal const string PROC_SELF_PAGEMAP = "/proc/self/pagemap";

    /// <summary>_IOWR('f', 16, struct pm_scan_arg).</summary>
    internal const ulong PAGEMAP_SCAN = 0xC0606610;

    /// <summary>Write-protect the pages it reports (clears "written"); needs a uffd-WP registered range.</summary>
    internal const ulong PM_SCAN_WP_MATCHING = 1UL << 0;

    /// <summary>Fail with EPERM unless the whole range is registered with WP_ASYNC.</summary>
    internal const ulong PM_SCAN_CHECK_WPASYNC = 1UL << 1;

    internal const ulong PAGE_IS_WPALLOWED = 1UL << 0;
    internal const ulong PAGE_IS_WRITTEN = 1UL << 1;
    internal const ulong PAGE_IS_FILE = 1UL << 2;
    internal const ulong PAGE_IS_PRESENT = 1UL << 3;
    internal const ulong PAGE_IS_SWAPPED = 1UL << 4;
    internal const ulong PAGE_IS_PFNZERO = 1UL << 5;
    internal const ulong PAGE_IS_HUGE = 1UL << 6;
    internal const ulong PAGE_IS_SOFT_DIRTY = 1UL << 7;

    [StructLayout(LayoutKind.Sequential)]
    internal struct page_region
    {
        public ulong start;
        public ulong end;
        public ulong categories;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct pm_scan_arg
    {
        public ulong size;
        public ulong flags;
        public ulong start;
        public ulong end;
        public ulong walk_end;
        public ulong vec;
        public ulong vec_len;
        public ulong max_pages;
        public ulong category_inverted;
        public ulong category_mask;
        public ulong category_anyof_mask;
        public ulong return_mask;
    }
}
