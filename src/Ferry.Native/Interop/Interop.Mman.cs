using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

internal static unsafe partial class Libc
{
    internal const int PROT_READ = 0x1;
    internal const int PROT_WRITE = 0x2;
    internal const int MAP_PRIVATE = 0x02;
    internal const int MAP_ANONYMOUS = 0x20;
    internal const int MAP_NORESERVE = 0x4000;
    internal const int MADV_DONTNEED = 4;

    /// <summary>mmap returns MAP_FAILED ((void*)-1), not null, on failure.</summary>
    internal static readonly void* MAP_FAILED = (void*)-1;

    [LibraryImport("libc", SetLastError = true)]
    internal static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int munmap(void* addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int madvise(void* addr, nuint length, int advice);
}
