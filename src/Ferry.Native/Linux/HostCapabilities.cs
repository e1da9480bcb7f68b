using System.Globalization;
using System.Text;

namespace Ferry.Native.Linux;

/// <summary>
/// What this host offers Ferry's kernel backends, probed once per process (<see cref="Current"/>)
/// on throwaway userfaultfds and mappings, never assumed. Backend factories and tests read this
/// record; tests build fake ones to exercise the "capability missing" paths.
/// </summary>
public sealed record HostCapabilities
{
    private static readonly Lazy<HostCapabilities> s_current = new(HostCapabilityProbe.Run, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>This process's capabilities, probed on first use (a few milliseconds).</summary>
    public static HostCapabilities Current => s_current.Value;

    public bool IsLinux { get; init; }

    /// <summary>/proc/sys/kernel/osrelease, or the OS description off Linux.</summary>
    public string KernelRelease { get; init; } = "";

    /// <summary>The kernel's page size (Environment.SystemPageSize): the granularity of write protection and PAGEMAP_SCAN.</summary>
    public int KernelPageSize { get; init; }

    /// <summary>Effective uid 0.</summary>
    public bool IsRoot { get; init; }

    /// <summary>The first way of creating a userfaultfd that worked; <see cref="UserfaultfdAccess.None"/> when none did.</summary>
    public UserfaultfdAccess UserfaultfdAccess { get; init; }

    /// <summary>Why no userfaultfd could be created (errno text), when none could.</summary>
    public string? UserfaultfdError { get; init; }

    /// <summary>The kernel's full supported feature set from UFFDIO_API.</summary>
    public UserfaultfdFeatures Features { get; init; }

    /// <summary>A range registered in MISSING mode supports UFFDIO_COPY and UFFDIO_ZEROPAGE (post-copy).</summary>
    public bool MissingMode { get; init; }

    /// <summary>The whole WP_ASYNC + PAGEMAP_SCAN recipe ran on a probe region and reported exactly the pages written.</summary>
    public bool PagemapScanWorks { get; init; }

    /// <summary>Why the PAGEMAP_SCAN probe failed, when it did.</summary>
    public string? PagemapScanError { get; init; }

    /// <summary>
    /// Measured cost of the first write to a write-protected (tracked) page, the price a guest
    /// pays per page per round under kernel tracking: median over a few rounds on a probe region.
    /// </summary>
    public TimeSpan? WriteProtectFaultCost { get; init; }

    public bool HasUserfaultfd => UserfaultfdAccess != UserfaultfdAccess.None;

    public bool HasWriteProtect => HasUserfaultfd && Features.HasFlag(UserfaultfdFeatures.PagefaultFlagWp);

    public bool HasWpAsync => HasUserfaultfd && Features.HasFlag(UserfaultfdFeatures.WpAsync);

    public bool HasWpUnpopulated => HasUserfaultfd && Features.HasFlag(UserfaultfdFeatures.WpUnpopulated);

    /// <summary>Null when the kernel dirty log can run here; otherwise the first missing piece, phrased for a report.</summary>
    public string? KernelDirtyLogMissing =>
        !IsLinux ? "not Linux"
        : !HasUserfaultfd ? $"no userfaultfd ({UserfaultfdError ?? "unknown error"})"
        : !HasWriteProtect ? "kernel lacks userfaultfd write-protect (UFFD_FEATURE_PAGEFAULT_FLAG_WP)"
        : !HasWpUnpopulated ? "kernel lacks UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4+)"
        : !HasWpAsync ? "kernel lacks UFFD_FEATURE_WP_ASYNC (Linux 6.7+)"
        : !PagemapScanWorks ? $"kernel lacks PAGEMAP_SCAN ({PagemapScanError ?? "probe failed"})"
        : null;

    public bool KernelDirtyLogAvailable => KernelDirtyLogMissing is null;

    /// <summary>A human-readable summary, for <c>ferry capabilities</c>.</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        CultureInfo inv = CultureInfo.InvariantCulture;
        sb.Append(inv, $"host: {(IsLinux ? "Linux " : "")}{KernelRelease}{(IsRoot ? ", root" : ", not root")}\n");
        sb.Append("userfaultfd:          ").Append(HasUserfaultfd
            ? $"yes, via {AccessText(UserfaultfdAccess)}"
            : $"no ({UserfaultfdError ?? (IsLinux ? "unknown error" : "not Linux")})").Append('\n');
        if (HasUserfaultfd)
        {
            sb.Append(inv, $"  write-protect (WP): {YesNo(HasWriteProtect)}\n");
            sb.Append(inv, $"  WP_UNPOPULATED:     {YesNo(HasWpUnpopulated)}\n");
            sb.Append(inv, $"  WP_ASYNC:           {YesNo(HasWpAsync)}\n");
            sb.Append(inv, $"  MISSING mode:       {YesNo(MissingMode)}{(MissingMode ? " (UFFDIO_COPY, UFFDIO_ZEROPAGE)" : "")}\n");
            sb.Append(inv, $"  supported features: 0x{(ulong)Features:x}\n");
        }
        sb.Append("PAGEMAP_SCAN:         ").Append(PagemapScanWorks ? "yes (exact on a probe region)" : $"no ({PagemapScanError ?? "not probed"})").Append('\n');
        if (WriteProtectFaultCost is { } cost)
        {
            sb.Append(inv, $"write-protect fault:  {cost.TotalMicroseconds:0.0} µs per first write to a tracked page\n");
        }
        sb.Append("kernel dirty log:     ").Append(KernelDirtyLogMissing is { } missing ? $"unavailable: {missing}" : "available").Append('\n');
        return sb.ToString();
    }

    private static string YesNo(bool value) => value ? "yes" : "no";

    private static string AccessText(UserfaultfdAccess access) => access switch
    {
        UserfaultfdAccess.Syscall => "the userfaultfd syscall",
        UserfaultfdAccess.DeviceNode => "/dev/userfaultfd",
        UserfaultfdAccess.UserModeOnly => "the userfaultfd syscall with UFFD_USER_MODE_ONLY (user-mode faults only)",
        _ => "nothing",
    };
}
