using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

internal static unsafe partial class Libc
{
    internal const short POLLIN = 0x001;

    // The C name, kept so NativeLayoutTests can match it against <poll.h>.
#pragma warning disable CS8981
    [StructLayout(LayoutKind.Sequential)]
    internal struct pollfd
    {
        public int fd;
        public short events;
        public short revents;
    }
#pragma warning restore CS8981

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int poll(pollfd* fds, nuint nfds, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial nint read(SafeFileDescriptorHandle fd, void* buf, nuint count);
}
