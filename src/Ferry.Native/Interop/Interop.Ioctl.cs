using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

internal static unsafe partial class Libc
{
    /// <summary>
    /// ioctl(2). The C prototype is variadic; on x86_64 SysV a fixed third pointer argument is
    /// passed exactly as the variadic one would be. The request is an unsigned long in the kernel,
    /// and the _IOWR-encoded numbers used here have the top bit set, so it is declared as ulong.
    /// </summary>
    [LibraryImport("libc", SetLastError = true)]
    internal static partial int ioctl(SafeFileDescriptorHandle fd, ulong request, void* arg);

    /// <summary>ioctl(2) whose argument is an integer rather than a pointer (USERFAULTFD_IOC_NEW takes the open flags).</summary>
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int ioctl_int(SafeFileDescriptorHandle fd, ulong request, nint arg);
}
