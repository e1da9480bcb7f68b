using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

internal static partial class Libc
{
    internal const int EINTR = 4;
    internal const int EAGAIN = 11;
    internal const int EEXIST = 17;

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int close(int fd);

    /// <summary>syscall(2) with one argument (userfaultfd takes only its flags).</summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial long syscall(long number, long arg1);

    [LibraryImport("libc")]
    [SuppressGCTransition]
    internal static partial uint geteuid();
}
