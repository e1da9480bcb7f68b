using System.Globalization;
using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Native.Linux;
using Ferry.Vm.Memory;

namespace Ferry.Vm.Tracking;

/// <summary>
/// Turns a <see cref="DirtyLogChoice"/> into a dirty log for one guest. <c>software</c> always
/// works; <c>kernel</c> works or throws (never a silent fallback); <c>auto</c> takes the kernel
/// log only where the host has every piece of it and a write-protect fault, measured by the
/// capability probe, is cheap enough that the guest loses less to faults than to the software
/// bitmap (the rule and its measurements: bench/Ferry.Bench.Tracking/README.md).
/// </summary>
public static class DirtyLogFactory
{
    /// <summary>The reason a kernel log reports when it was asked for by name.</summary>
    public const string KernelReason = "kernel: userfaultfd WP_ASYNC + PAGEMAP_SCAN";

    /// <summary>
    /// Auto picks the kernel log only when the first write to a tracked page costs at most this.
    /// Above it (e.g. ~15-30 µs on shadow-paging guests such as PVM) a guest that writes many
    /// distinct pages per round loses far more to faults than the ~10-30 ns per write the
    /// software bitmap costs, and its harvests are slower too.
    /// </summary>
    public static readonly TimeSpan AutoKernelMaxFaultCost = TimeSpan.FromMicroseconds(5);

    /// <summary>Creates the chosen dirty log (not started). <paramref name="host"/> defaults to <see cref="HostCapabilities.Current"/>.</summary>
    public static IDirtyLog Create(GuestMemory memory, DirtyLogChoice choice, HostCapabilities? host = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        DirtyLogDecision decision = Decide(choice, host ?? HostCapabilities.Current);
        if (decision.IsKernel && OperatingSystem.IsLinux())
        {
            return new KernelDirtyLog(memory, decision.Reason);
        }
        return new SoftwareDirtyLog(memory, decision.Reason);
    }

    /// <summary>Which backend <paramref name="choice"/> means on <paramref name="host"/>, with the reason for the report.</summary>
    public static DirtyLogDecision Decide(DirtyLogChoice choice, HostCapabilities host)
    {
        ArgumentNullException.ThrowIfNull(host);
        string? missing = host.KernelDirtyLogMissing
            ?? (host.KernelPageSize != PageSize.Bytes ? $"kernel page size is {host.KernelPageSize} bytes, guest pages are {PageSize.Bytes}" : null);
        switch (choice)
        {
            case DirtyLogChoice.Software:
                return new("software", "software: requested");
            case DirtyLogChoice.Kernel:
                if (missing is not null)
                {
                    throw new PlatformNotSupportedException($"kernel dirty log requested but unavailable on this host: {missing}. Use --dirty-log software or auto.");
                }
                return new("kernel", KernelReason);
            case DirtyLogChoice.Auto:
                if (missing is not null)
                {
                    return new("software", $"software: {missing} (auto)");
                }
                if (host.WriteProtectFaultCost is not { } cost)
                {
                    return new("software", "software: the write-protect fault cost was not measured (auto)");
                }
                string measured = string.Create(CultureInfo.InvariantCulture,
                    $"a write-protect fault costs {cost.TotalMicroseconds:0.0} µs here, limit {AutoKernelMaxFaultCost.TotalMicroseconds:0} µs");
                return cost <= AutoKernelMaxFaultCost
                    ? new("kernel", $"{KernelReason} (auto: {measured})")
                    : new("software", $"software: {measured}, so faults would cost the guest more than the bitmap (auto)");
            default:
                throw new ArgumentOutOfRangeException(nameof(choice), choice, "unknown dirty log choice");
        }
    }
}
