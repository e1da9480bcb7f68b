using Ferry.Core.Paging;
using Ferry.Native.Linux;

namespace Ferry.Vm.Memory;

/// <summary>Destination side, before the VM runs: guest RAM registered with userfaultfd MISSING so received runs go in with UFFDIO_COPY.</summary>
public sealed partial class GuestMemory
{
    /// <summary>True between <see cref="EnableFastInstall"/> and <see cref="DisableFastInstall"/>.</summary>
    public bool FastInstallActive => _installFd is not null;

    /// <summary>
    /// Destination side, before any page arrives: registers guest RAM with userfaultfd in MISSING
    /// mode so runs of received pages can be installed with UFFDIO_COPY. Nothing may touch a
    /// never-written page until <see cref="DisableFastInstall"/> — a fault there would wait for a
    /// resolver that does not exist — which holds because no VM runs on this memory yet and every
    /// reader here skips never-written pages.
    /// </summary>
    public void EnableFastInstall()
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("fast page install needs Linux userfaultfd");
        }
        if (_installFd is not null)
        {
            return;
        }
        Userfaultfd fd = Userfaultfd.Open();
        try
        {
            fd.Handshake(UserfaultfdFeatures.None);
            fd.Register(_mapping, 0, SizeBytes, UserfaultfdRegisterMode.Missing);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
        _installFd = fd;
    }

    /// <summary>Unregisters guest RAM: never-written pages become ordinary zero-fill-on-demand again. Call before the VM starts.</summary>
    public void DisableFastInstall()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref _installFd, null) is not { } fd)
        {
            return;
        }
        try
        {
            fd.Unregister(_mapping, 0, SizeBytes);
        }
        finally
        {
            fd.Dispose();
        }
    }

    /// <summary>Installs a run of whole pages starting at <paramref name="firstPage"/> (fast path when enabled).</summary>
    internal void InstallRun(long firstPage, ReadOnlySpan<byte> pages)
    {
        int count = pages.Length / PageSize.Bytes;
        CheckPage(firstPage);
        CheckPage(firstPage + count - 1);
        if (_installFd is { } fd && OperatingSystem.IsLinux())
        {
            long done = 0;
            for (int guard = 0; done < pages.Length && guard <= count; guard++)
            {
                done += fd.Copy(_mapping, (firstPage << PageSize.Shift) + done, pages[(int)done..]);
                if (done < pages.Length)
                {
                    // Already present (EEXIST): an ordinary copy is safe on a present page.
                    pages.Slice((int)done, PageSize.Bytes).CopyTo(_mapping.GetSpan((firstPage << PageSize.Shift) + done, PageSize.Bytes));
                    done += PageSize.Bytes;
                }
            }
            for (int i = 0; i < count; i++)
            {
                _populated.SetAtomic(firstPage + i);
            }
            return;
        }
        for (int i = 0; i < count; i++)
        {
            InstallPage(firstPage + i, pages.Slice(i * PageSize.Bytes, PageSize.Bytes));
        }
    }
}
