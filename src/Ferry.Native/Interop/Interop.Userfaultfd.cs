using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

/// <summary>
/// linux/userfaultfd.h for x86_64. Values the Debian 12 (6.1) headers lack — the WP_UNPOPULATED
/// and WP_ASYNC features — come from the 6.7+ uapi header; NativeLayoutTests checks the rest
/// against the installed header and the hand-added ones against a C definition of the same.
/// </summary>
internal static partial class Libc
{
    internal const long SYS_userfaultfd = 323;

    internal const string USERFAULTFD_DEVICE = "/dev/userfaultfd";

    /// <summary>_IO(0xAA, 0x00) on /dev/userfaultfd: returns a new uffd; the argument is the open flags.</summary>
    internal const ulong USERFAULTFD_IOC_NEW = 0xAA00;

    /// <summary>Flag for userfaultfd(2) / USERFAULTFD_IOC_NEW: only faults from user mode are handled; allowed to non-root.</summary>
    internal const int UFFD_USER_MODE_ONLY = 1;

    internal const ulong UFFD_API = 0xAA;

    internal const ulong UFFDIO_API = 0xC018AA3F;
    internal const ulong UFFDIO_REGISTER = 0xC020AA00;
    internal const ulong UFFDIO_UNREGISTER = 0x8010AA01;
    internal const ulong UFFDIO_WAKE = 0x8010AA02;
    internal const ulong UFFDIO_COPY = 0xC028AA03;
    internal const ulong UFFDIO_ZEROPAGE = 0xC020AA04;
    internal const ulong UFFDIO_WRITEPROTECT = 0xC018AA06;
    internal const ulong UFFDIO_CONTINUE = 0xC020AA07;

    // _UFFDIO_* command numbers: bit n of uffdio_api.ioctls / uffdio_register.ioctls says ioctl n is available.
    internal const int _UFFDIO_REGISTER = 0x00;
    internal const int _UFFDIO_UNREGISTER = 0x01;
    internal const int _UFFDIO_WAKE = 0x02;
    internal const int _UFFDIO_COPY = 0x03;
    internal const int _UFFDIO_ZEROPAGE = 0x04;
    internal const int _UFFDIO_WRITEPROTECT = 0x06;
    internal const int _UFFDIO_CONTINUE = 0x07;
    internal const int _UFFDIO_API = 0x3F;

    internal const ulong UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1UL << 0;
    internal const ulong UFFD_FEATURE_EVENT_FORK = 1UL << 1;
    internal const ulong UFFD_FEATURE_EVENT_REMAP = 1UL << 2;
    internal const ulong UFFD_FEATURE_EVENT_REMOVE = 1UL << 3;
    internal const ulong UFFD_FEATURE_MISSING_HUGETLBFS = 1UL << 4;
    internal const ulong UFFD_FEATURE_MISSING_SHMEM = 1UL << 5;
    internal const ulong UFFD_FEATURE_EVENT_UNMAP = 1UL << 6;
    internal const ulong UFFD_FEATURE_SIGBUS = 1UL << 7;
    internal const ulong UFFD_FEATURE_THREAD_ID = 1UL << 8;
    internal const ulong UFFD_FEATURE_EXACT_ADDRESS = 1UL << 11;

    /// <summary>Since 6.4: WP also covers never-populated pages (the kernel installs PTE markers).</summary>
    internal const ulong UFFD_FEATURE_WP_UNPOPULATED = 1UL << 13;

    /// <summary>Since 6.7: the kernel resolves WP faults itself and records the page as written.</summary>
    internal const ulong UFFD_FEATURE_WP_ASYNC = 1UL << 15;

    internal const ulong UFFDIO_REGISTER_MODE_MISSING = 1UL << 0;
    internal const ulong UFFDIO_REGISTER_MODE_WP = 1UL << 1;
    internal const ulong UFFDIO_REGISTER_MODE_MINOR = 1UL << 2;

    internal const ulong UFFDIO_WRITEPROTECT_MODE_WP = 1UL << 0;
    internal const ulong UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1UL << 1;

    internal const byte UFFD_EVENT_PAGEFAULT = 0x12;
    internal const ulong UFFD_PAGEFAULT_FLAG_WRITE = 1UL << 0;
    internal const ulong UFFD_PAGEFAULT_FLAG_WP = 1UL << 1;
    internal const ulong UFFD_PAGEFAULT_FLAG_MINOR = 1UL << 2;

    [StructLayout(LayoutKind.Sequential)]
    internal struct uffdio_api
    {
        public ulong api;
        public ulong features;
        public ulong ioctls;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct uffdio_range
    {
        public ulong start;
        public ulong len;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct uffdio_register
    {
        public uffdio_range range;
        public ulong mode;
        public ulong ioctls;
    }

    /// <summary>UFFDIO_COPY argument (40 bytes); <c>copy</c> returns bytes copied, or a negated errno.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct uffdio_copy
    {
        public ulong dst;
        public ulong src;
        public ulong len;
        public ulong mode;
        public long copy;
    }

    /// <summary>UFFDIO_ZEROPAGE argument (32 bytes); <c>zeropage</c> returns bytes mapped, or a negated errno.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct uffdio_zeropage
    {
        public uffdio_range range;
        public ulong mode;
        public long zeropage;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct uffdio_writeprotect
    {
        public uffdio_range range;
        public ulong mode;
    }

    /// <summary>
    /// The message read(2) returns from a uffd (packed, 32 bytes). Only the page-fault arm of the
    /// union is declared; WP_ASYNC never produces messages, it is here for the post-copy handler.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 32)]
    internal struct uffd_msg
    {
        [FieldOffset(0)] public byte @event;
        [FieldOffset(8)] public ulong pagefault_flags;
        [FieldOffset(16)] public ulong pagefault_address;
        [FieldOffset(24)] public uint pagefault_feat_ptid;
    }
}
