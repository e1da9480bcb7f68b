using Ferry.Core.Paging;
using Ferry.Native.Linux;

namespace Ferry.Vm.Memory;

/// <summary>
/// Destination side, while the VM runs ahead of its pages: the software path (present checks and
/// managed waits) and the kernel path (userfaultfd MISSING, native accesses, a resolver thread).
/// </summary>
public sealed partial class GuestMemory
{
    /// <summary>The post-copy state while the VM runs ahead of its pages, else null.</summary>
    public PostCopyPages? PostCopy => Volatile.Read(ref _postCopy);

    /// <summary>True while post-copy runs on the kernel path: guest RAM registered MISSING, faults resolved by <see cref="UserfaultFaultResolver"/>.</summary>
    public bool KernelFaultsActive => OperatingSystem.IsLinux() && Volatile.Read(ref _resolver) is not null;

    /// <summary>
    /// Destination side, before the VM starts in post-copy, software path: from now on a guest
    /// access (write or read) to a page that is not present blocks in managed code until the
    /// receiver installs it.
    /// </summary>
    public void BeginPostCopy(PostCopyPages pages)
    {
        if (FastInstallActive)
        {
            throw new InvalidOperationException("software post-copy needs ordinary guest RAM: disable fast install first, or use BeginKernelPostCopy");
        }
        if (Interlocked.CompareExchange(ref _postCopy, pages, null) is not null)
        {
            throw new InvalidOperationException("post-copy already active");
        }
    }

    /// <summary>
    /// Destination side, before the VM starts in post-copy, kernel path: guest RAM stays
    /// registered with userfaultfd MISSING (from <see cref="EnableFastInstall"/>), so guest code
    /// touches memory directly and the kernel traps an access to a page that has not arrived.
    /// Pages in <paramref name="pending"/> that hold an older copy from a pre-copy round are
    /// present, so the kernel would let the guest read that stale copy: accesses to those check
    /// presence in software and wait, as on the software path. (Dropping them with MADV_DONTNEED
    /// instead made them fault, but cost 0.4–1.1 µs a page of downtime: 16–28 ms measured.)
    /// </summary>
    public void BeginKernelPostCopy(PostCopyPages pages, DirtyBitmap pending)
    {
        if (!OperatingSystem.IsLinux() || _installFd is not { } fd)
        {
            throw new InvalidOperationException("kernel post-copy needs guest RAM registered with userfaultfd MISSING (EnableFastInstall)");
        }
        if (pending.PageCount != PageCount)
        {
            throw new ArgumentException($"pending map has {pending.PageCount} pages, guest {PageCount}", nameof(pending));
        }
        var stale = new DirtyBitmap(PageCount);
        foreach (long p in pending)
        {
            if (_populated[p])
            {
                stale.Set(p);
            }
        }
        if (Interlocked.CompareExchange(ref _postCopy, pages, null) is not null)
        {
            throw new InvalidOperationException("post-copy already active");
        }
        _staleCopies = stale;
        var resolver = new UserfaultFaultResolver(_mapping, fd, pages);
        resolver.Start();
        Volatile.Write(ref _resolver, resolver);
    }

    /// <summary>
    /// After the last page arrived: accesses no longer check presence. On the kernel path the
    /// resolver stops, then the range is unregistered — which wakes any fault still queued, to be
    /// retried as an ordinary fault — and only then do guest accesses go back to plain stores.
    /// </summary>
    public void EndPostCopy()
    {
        ReleaseKernelFaults();
        Volatile.Write(ref _postCopy, null);
        _staleCopies = null;
    }

    /// <summary>
    /// Post-copy failed: releases vCPUs blocked in kernel faults (their missing pages read as
    /// zeros from now on — the VM is being discarded) so the VM can stop. No-op on the software path.
    /// </summary>
    public void AbandonPostCopy() => ReleaseKernelFaults();

    private void ReleaseKernelFaults()
    {
        if (!OperatingSystem.IsLinux() || Volatile.Read(ref _resolver) is not { } resolver)
        {
            return;
        }
        resolver.Stop();
        // Unregister while vCPUs still take the native path: a managed store can then never meet a
        // registered missing page, whatever a vCPU read of the fields below a moment ago.
        Userfaultfd fd = _installFd!;
        fd.Unregister(_mapping, 0, SizeBytes);
        Volatile.Write(ref _installFd, null);
        Volatile.Write(ref _resolver, null);
        fd.Dispose();
    }

    /// <summary>
    /// Post-copy install of a page that arrived from the source. A page already present is left
    /// alone (the guest may have written it since), so a duplicate can never roll data back.
    /// Returns false for such a duplicate.
    /// </summary>
    public bool InstallArrivedPage(long page, ReadOnlySpan<byte> content, bool zero)
    {
        CheckPage(page);
        PostCopyPages pages = Volatile.Read(ref _postCopy) ?? throw new InvalidOperationException("post-copy is not active");
        if (pages.IsPresent(page))
        {
            return false;
        }
        // No vCPU touches a missing page (it waits, in managed code or in the kernel), so these installs race with nothing.
        if (KernelFaultsActive && OperatingSystem.IsLinux())
        {
            // UFFDIO_COPY / UFFDIO_ZEROPAGE install the page and wake any vCPU faulting on it.
            if (zero)
            {
                if (!_installFd!.ZeroPage(_mapping, page << PageSize.Shift, PageSize.Bytes))
                {
                    // Present already: a stale copy from a live round, which no vCPU touches until this page is marked present.
                    _mapping.GetSpan(page << PageSize.Shift, PageSize.Bytes).Clear();
                }
            }
            else
            {
                // A stale copy is present, so UFFDIO_COPY reports EEXIST and InstallRun copies over it.
                InstallRun(page, content);
            }
        }
        else if (zero)
        {
            InstallZeroPage(page);
        }
        else
        {
            InstallPage(page, content);
        }
        return pages.MarkPresent(page);
    }

    /// <summary>
    /// A guest write while guest RAM is registered with userfaultfd: allowed only on the kernel
    /// post-copy path, and then only as a native copy (see <see cref="UserfaultFaultResolver"/>).
    /// During a plain fast install no guest runs, and a managed store into a missing page would
    /// wait for a resolver that does not exist.
    /// </summary>
    private void WriteWhileRegistered(long page, int offset, ReadOnlySpan<byte> data)
    {
        if (!KernelFaultsActive)
        {
            throw new InvalidOperationException("guest RAM is still registered for fast install; no guest may run on it until DisableFastInstall");
        }
        WaitIfStale(page);
        if (!_populated[page])
        {
            _populated.SetAtomic(page);
        }
        _mapping.NativeWrite((page << PageSize.Shift) + offset, data);
        Volatile.Read(ref _tracker)?.SetAtomic(page);
    }

    /// <summary>Kernel path: a page whose stale copy is present waits for its new content in software (managed code, no kernel fault).</summary>
    private void WaitIfStale(long page)
    {
        if (_staleCopies is { } stale && stale[page])
        {
            WaitIfMissing(page);
        }
    }

    private void WaitIfMissing(long page)
    {
        if (Volatile.Read(ref _postCopy) is { } pages && !pages.IsPresent(page))
        {
            pages.WaitUntilPresent(page);
        }
    }
}
