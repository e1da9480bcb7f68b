using Ferry.Native.Interop;

namespace Ferry.Native;

/// <summary>A failed system call, with its name and errno text (e.g. "mmap failed: Cannot allocate memory (errno 12)").</summary>
public sealed class NativeCallException : Exception
{
    public NativeCallException(string syscall, int errno)
        : base($"{syscall} failed: {Libc.ErrnoText(errno)} (errno {errno})")
    {
        Syscall = syscall;
        Errno = errno;
    }

    public string Syscall { get; }

    public int Errno { get; }
}
