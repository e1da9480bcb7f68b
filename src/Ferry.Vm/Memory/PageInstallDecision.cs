using Ferry.Core.Migration;
using Ferry.Native.Linux;

namespace Ferry.Vm.Memory;

/// <summary>What a <see cref="PageInstallChoice"/> means on a host, and why, as the report shows it.</summary>
public readonly record struct PageInstallDecision(string Backend, string Reason)
{
    public const string UffdReason = "uffd: UFFDIO_COPY in contiguous runs into a MISSING-registered region, no user-space fault per fresh page; in post-copy the kernel traps accesses to missing pages";

    public bool IsUffd => Backend == "uffd";

    /// <summary>The decision on this host (capabilities probed once per process).</summary>
    public static PageInstallDecision ForThisHost(PageInstallChoice choice) => Decide(choice, HostCapabilities.Current);

    public static PageInstallDecision Decide(PageInstallChoice choice, HostCapabilities host)
    {
        string? missing = !host.IsLinux ? "not Linux"
            : !host.HasUserfaultfd ? $"no userfaultfd ({host.UserfaultfdError})"
            : !host.MissingMode ? "userfaultfd lacks MISSING mode"
            : null;
        return choice switch
        {
            PageInstallChoice.Copy => new("copy", "copy: requested; post-copy on the software path (present-bitmap checks)"),
            PageInstallChoice.Uffd when missing is not null =>
                throw new PlatformNotSupportedException($"uffd page install requested but unavailable on this host: {missing}. Use --page-install copy or auto."),
            PageInstallChoice.Uffd => new("uffd", UffdReason),
            _ when missing is not null => new("copy", $"copy: {missing} (auto); post-copy on the software path"),
            _ => new("uffd", UffdReason + " (auto)"),
        };
    }
}
