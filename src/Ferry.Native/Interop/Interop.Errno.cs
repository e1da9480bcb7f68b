using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

internal static unsafe partial class Libc
{
    [LibraryImport("libc")]
    private static partial byte* strerror(int errnum);

    internal static string ErrnoText(int errno)
    {
        byte* p = strerror(errno);
        return p == null ? $"errno {errno}" : Marshal.PtrToStringUTF8((nint)p) ?? $"errno {errno}";
    }
}
