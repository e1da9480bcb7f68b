using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Ferry.Native.Interop;

namespace Ferry.Native.Linux;

/// <summary>
/// One userfaultfd: created non-blocking and close-on-exec, its API handshake done exactly once
/// (the kernel refuses a second UFFDIO_API on the same fd with EINVAL), ranges given as offsets in
/// an <see cref="AnonymousMapping"/> so no raw address leaves this assembly. Closing the fd
/// unregisters every range it still has, which the kernel does on release.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed unsafe class Userfaultfd : IDisposable
{
    private readonly SafeFileDescriptorHandle _fd;
    private int _handshakes;

    private Userfaultfd(SafeFileDescriptorHandle fd, UserfaultfdAccess access)
    {
        _fd = fd;
        Access = access;
    }

    /// <summary>How this fd was created.</summary>
    public UserfaultfdAccess Access { get; }

    /// <summary>Creates a uffd the first way that works: syscall, device node, then user-mode-only.</summary>
    public static Userfaultfd Open()
    {
        int firstErrno = 0;
        foreach (UserfaultfdAccess access in new[] { UserfaultfdAccess.Syscall, UserfaultfdAccess.DeviceNode, UserfaultfdAccess.UserModeOnly })
        {
            if (TryOpen(access, out Userfaultfd? uffd, out int errno))
            {
                return uffd;
            }
            firstErrno = firstErrno == 0 ? errno : firstErrno;
        }
        throw new NativeCallException("userfaultfd (syscall, /dev/userfaultfd and UFFD_USER_MODE_ONLY all failed; first error)", firstErrno);
    }

    /// <summary>Creates a uffd exactly the given way, or throws.</summary>
    public static Userfaultfd Open(UserfaultfdAccess access)
    {
        if (!TryOpen(access, out Userfaultfd? uffd, out int errno))
        {
            throw new NativeCallException(access == UserfaultfdAccess.DeviceNode ? "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)" : "userfaultfd", errno);
        }
        return uffd;
    }

    /// <summary>Creates a uffd the given way; on failure returns false with the errno.</summary>
    public static bool TryOpen(UserfaultfdAccess access, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Userfaultfd? uffd, out int errno)
    {
        uffd = null;
        errno = 0;
        int flags = Libc.O_CLOEXEC | Libc.O_NONBLOCK;
        switch (access)
        {
            case UserfaultfdAccess.Syscall:
            case UserfaultfdAccess.UserModeOnly:
            {
                long fd = Libc.syscall(Libc.SYS_userfaultfd, access == UserfaultfdAccess.UserModeOnly ? flags | Libc.UFFD_USER_MODE_ONLY : flags);
                if (fd < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    return false;
                }
                uffd = new Userfaultfd(new SafeFileDescriptorHandle((int)fd), access);
                return true;
            }
            case UserfaultfdAccess.DeviceNode:
            {
                int dev = Libc.open(Libc.USERFAULTFD_DEVICE, Libc.O_RDWR | Libc.O_CLOEXEC);
                if (dev < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    return false;
                }
                using var device = new SafeFileDescriptorHandle(dev);
                int fd = Libc.ioctl_int(device, Libc.USERFAULTFD_IOC_NEW, flags);
                if (fd < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    return false;
                }
                uffd = new Userfaultfd(new SafeFileDescriptorHandle(fd), access);
                return true;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(access), access, "not a way to create a userfaultfd");
        }
    }

    /// <summary>
    /// UFFDIO_API, allowed once per fd. The kernel fails it (EINVAL) when it lacks a requested
    /// feature; on success it writes back its full supported set, not the granted subset.
    /// </summary>
    public (UserfaultfdFeatures Supported, UserfaultfdIoctls Ioctls) Handshake(UserfaultfdFeatures requested)
    {
        if (Interlocked.Exchange(ref _handshakes, 1) != 0)
        {
            throw new InvalidOperationException("UFFDIO_API was already done on this userfaultfd; the kernel allows it once per fd");
        }
        var api = new Libc.uffdio_api { api = Libc.UFFD_API, features = (ulong)requested };
        // SAFETY: api lives on this stack frame for the whole call; the kernel reads and writes 24 bytes.
        Ioctl(Libc.UFFDIO_API, &api, "ioctl(UFFDIO_API)");
        return ((UserfaultfdFeatures)api.features, (UserfaultfdIoctls)api.ioctls);
    }

    /// <summary>UFFDIO_REGISTER over a page-aligned range of the mapping. Returns the ioctls the range supports.</summary>
    public UserfaultfdIoctls Register(AnonymousMapping mapping, long offset, long length, UserfaultfdRegisterMode mode)
    {
        (ulong start, ulong len) = mapping.KernelRange(offset, length);
        var reg = new Libc.uffdio_register { range = new Libc.uffdio_range { start = start, len = len }, mode = (ulong)mode };
        // SAFETY: reg lives on this stack frame; the kernel reads the range and mode, writes ioctls.
        Ioctl(Libc.UFFDIO_REGISTER, &reg, "ioctl(UFFDIO_REGISTER)");
        return (UserfaultfdIoctls)reg.ioctls;
    }

    /// <summary>UFFDIO_UNREGISTER: the range stops being tracked and its write protection is dropped.</summary>
    public void Unregister(AnonymousMapping mapping, long offset, long length)
    {
        (ulong start, ulong len) = mapping.KernelRange(offset, length);
        var range = new Libc.uffdio_range { start = start, len = len };
        // SAFETY: range lives on this stack frame; the kernel only reads it.
        Ioctl(Libc.UFFDIO_UNREGISTER, &range, "ioctl(UFFDIO_UNREGISTER)");
    }

    /// <summary>UFFDIO_WRITEPROTECT: protects (or, with false, unprotects) a range registered in WP mode.</summary>
    public void WriteProtect(AnonymousMapping mapping, long offset, long length, bool protect)
    {
        (ulong start, ulong len) = mapping.KernelRange(offset, length);
        var wp = new Libc.uffdio_writeprotect
        {
            range = new Libc.uffdio_range { start = start, len = len },
            mode = protect ? Libc.UFFDIO_WRITEPROTECT_MODE_WP : 0,
        };
        // SAFETY: wp lives on this stack frame; the kernel only reads it.
        Ioctl(Libc.UFFDIO_WRITEPROTECT, &wp, "ioctl(UFFDIO_WRITEPROTECT)");
    }

    /// <summary>
    /// UFFDIO_COPY: fills missing pages of a MISSING-registered range from <paramref name="source"/>
    /// (ordinary memory, a whole number of pages) with no user-space fault. Returns the bytes
    /// installed from the start of <paramref name="source"/>: all of them, or fewer when the kernel
    /// met a page that is already present (EEXIST) — the caller writes that page directly and
    /// calls again after it.
    /// </summary>
    public long Copy(AnonymousMapping mapping, long offset, ReadOnlySpan<byte> source)
    {
        (ulong start, ulong len) = mapping.KernelRange(offset, source.Length);
        ulong done = 0;
        fixed (byte* src = source)
        {
            for (int attempt = 0; done < len; attempt++)
            {
                var copy = new Libc.uffdio_copy { dst = start + done, src = (ulong)(src + done), len = len - done, mode = 0 };
                // SAFETY: copy lives on this frame; src is pinned for the call and the kernel reads len − done bytes of it.
                if (Libc.ioctl(_fd, Libc.UFFDIO_COPY, &copy) == 0)
                {
                    return (long)len;
                }
                int errno = Marshal.GetLastPInvokeError();
                if (copy.copy > 0)
                {
                    done += (ulong)copy.copy;
                }
                if (errno == Libc.EEXIST)
                {
                    return (long)done;
                }
                if ((errno != Libc.EAGAIN && errno != Libc.EINTR) || attempt >= 10_000)
                {
                    throw new NativeCallException("ioctl(UFFDIO_COPY)", errno);
                }
            }
        }
        return (long)done;
    }

    /// <summary>
    /// UFFDIO_ZEROPAGE: maps the zero page into missing pages of a MISSING-registered range and
    /// wakes threads faulting there. Returns false when a page was already present (EEXIST), which
    /// is normal when a pusher raced the fault; the caller then has nothing left to do for it.
    /// </summary>
    public bool ZeroPage(AnonymousMapping mapping, long offset, long length)
    {
        (ulong start, ulong len) = mapping.KernelRange(offset, length);
        for (int attempt = 0; ; attempt++)
        {
            var zero = new Libc.uffdio_zeropage { range = new Libc.uffdio_range { start = start, len = len }, mode = 0 };
            // SAFETY: zero lives on this frame; the kernel reads the range and writes the result.
            if (Libc.ioctl(_fd, Libc.UFFDIO_ZEROPAGE, &zero) == 0)
            {
                return true;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EEXIST)
            {
                return false;
            }
            if ((errno != Libc.EAGAIN && errno != Libc.EINTR) || attempt >= 10_000)
            {
                throw new NativeCallException("ioctl(UFFDIO_ZEROPAGE)", errno);
            }
        }
    }

    /// <summary>UFFDIO_WAKE: wakes threads waiting on a fault in the range (for faults whose page another path already installed).</summary>
    public void Wake(AnonymousMapping mapping, long offset, long length)
    {
        (ulong start, ulong len) = mapping.KernelRange(offset, length);
        var range = new Libc.uffdio_range { start = start, len = len };
        // SAFETY: range lives on this stack frame; the kernel only reads it.
        Ioctl(Libc.UFFDIO_WAKE, &range, "ioctl(UFFDIO_WAKE)");
    }

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/> for the fd to become readable (a fault is queued).
    /// A blocking poll, not a spin: a spinning handler hurts tail latency on a small machine (kernel.md).
    /// </summary>
    public bool WaitReadable(int timeoutMs)
    {
        var pfd = new Libc.pollfd { fd = (int)_fd.DangerousGetHandle(), events = Libc.POLLIN };
        bool added = false;
        _fd.DangerousAddRef(ref added);
        try
        {
            // SAFETY: pfd lives on this frame; the fd stays open while the reference is held.
            int n = Libc.poll(&pfd, 1, timeoutMs);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                return errno == Libc.EINTR ? false : throw new NativeCallException("poll(userfaultfd)", errno);
            }
            return n > 0 && (pfd.revents & Libc.POLLIN) != 0;
        }
        finally
        {
            if (added)
            {
                _fd.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Reads queued page-fault messages without blocking and stores each fault's offset in
    /// <paramref name="mapping"/> (page-aligned) in <paramref name="offsets"/>. Returns how many;
    /// 0 when none is queued. Messages of other kinds (none are enabled here) are skipped.
    /// </summary>
    public int ReadPageFaults(AnonymousMapping mapping, Span<long> offsets)
    {
        const int MaxMessages = 16;
        Libc.uffd_msg* msgs = stackalloc Libc.uffd_msg[MaxMessages];
        int want = Math.Min(MaxMessages, offsets.Length);
        nint got;
        for (int attempt = 0; ; attempt++)
        {
            got = Libc.read(_fd, msgs, (nuint)(want * sizeof(Libc.uffd_msg)));
            if (got >= 0)
            {
                break;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EAGAIN)
            {
                return 0;
            }
            if (errno != Libc.EINTR || attempt >= 100)
            {
                throw new NativeCallException("read(userfaultfd)", errno);
            }
        }
        ulong start = (ulong)mapping.Pointer;
        ulong pageMask = ~((ulong)Environment.SystemPageSize - 1);
        int count = 0;
        for (int i = 0; i < got / sizeof(Libc.uffd_msg); i++)
        {
            if (msgs[i].@event != Libc.UFFD_EVENT_PAGEFAULT)
            {
                continue;
            }
            ulong address = msgs[i].pagefault_address & pageMask;
            if (address < start || address >= start + (ulong)mapping.Length)
            {
                continue;
            }
            offsets[count++] = (long)(address - start);
        }
        return count;
    }

    private void Ioctl(ulong request, void* arg, string what)
    {
        // Range ioctls can be interrupted by a signal before doing anything; they are idempotent, so retry.
        for (int attempt = 0; ; attempt++)
        {
            if (Libc.ioctl(_fd, request, arg) == 0)
            {
                return;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Libc.EINTR || attempt >= 100)
            {
                throw new NativeCallException(what, errno);
            }
        }
    }

    public void Dispose() => _fd.Dispose();
}
