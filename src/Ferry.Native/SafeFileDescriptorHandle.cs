using System.Runtime.InteropServices;
using Ferry.Native.Interop;

namespace Ferry.Native;

/// <summary>
/// Owns one Linux file descriptor and closes it with close(2) exactly once, even if the owner is
/// never disposed. Invalid is -1 (what open and syscall return on failure); 0 is a valid fd.
/// </summary>
public sealed class SafeFileDescriptorHandle : SafeHandle
{
    /// <summary>For the LibraryImport marshaller, which creates the handle before setting it.</summary>
    public SafeFileDescriptorHandle()
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
    }

    internal SafeFileDescriptorHandle(int fd)
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
        SetHandle(fd);
    }

    public override bool IsInvalid => handle < 0;

    /// <summary>The descriptor number, for diagnostics only; calls take the handle so it cannot be closed under them.</summary>
    public int Number => (int)handle;

    /// <summary>Opens an existing file, throwing NativeCallException("open(path)") on failure.</summary>
    internal static SafeFileDescriptorHandle Open(string path, int flags)
    {
        int fd = Libc.open(path, flags | Libc.O_CLOEXEC);
        if (fd < 0)
        {
            throw new NativeCallException($"open({path})", Marshal.GetLastPInvokeError());
        }
        return new SafeFileDescriptorHandle(fd);
    }

    protected override bool ReleaseHandle()
    {
        // On Linux the descriptor is released even when close reports EINTR, so never retry.
        return Libc.close((int)handle) == 0 || Marshal.GetLastPInvokeError() == Libc.EINTR;
    }
}
