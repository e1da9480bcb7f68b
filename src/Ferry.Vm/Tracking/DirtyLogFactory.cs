using System.Globalization;
using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Core.Workloads;
using Ferry.Native.Linux;
using Ferry.Vm.Memory;

namespace Ferry.Vm.Tracking;

/// <summary>
/// Turns a <see cref="DirtyLogChoice"/> into a dirty log for one guest. <c>software</c> always
/// works; <c>kernel</c> works or throws (never a silent fallback); <c>auto</c> takes the kernel
/// log only where the host has every piece of it and a write-protect fault, as measured by the
/// capability probe, is cheap enough to beat the software bitmap.
/// <para>
/// Why the bar is high: Ferry's guests write through <see cref="GuestMemory.Write"/>, so the
/// software log sees every write for one atomic OR (tens of ns) and harvests a whole bitmap in
/// microseconds. The kernel log costs nothing per write but a fault on each page's first write
/// after every harvest, and a harvest walks page tables (milliseconds per GiB, and it is on the
/// downtime path in the final round). It only wins when pages are rewritten many times per
/// round. Measured (bench/Ferry.Bench.Tracking/README.md): faults cost 0.6–3 µs on the KVM
/// machine kind and 15–30 µs on the PVM kind, so auto picks software on both.
/// </para>
/// </summary>
public static class DirtyLogFactory
{
    /// <summary>The reason a kernel log reports when it was asked for by name.</summary>
    public const string KernelReason = "kernel: userfaultfd WP_ASYNC + PAGEMAP_SCAN";

    /// <summary>
    /// Auto picks the kernel log only when the first write to a tracked page costs at most this:
    /// about five software-bitmap marks, so the kernel log breaks even for pages written five
    /// or more times per round, which hot working sets do and uniform writers over large
    /// working sets do not.
    /// </summary>
    public static readonly TimeSpan AutoKernelMaxFaultCost = TimeSpan.FromMicroseconds(0.3);

    /// <summary>
    /// What one mark in the software bitmap costs the guest per write: 40–140 ns measured
    /// (bench/Ferry.Bench.Tracking/README.md, 4 MiB and 256 MiB working sets).
    /// </summary>
    public static readonly TimeSpan SoftwareMarkCost = TimeSpan.FromMicroseconds(0.1);

    /// <summary>Writes per second of an unthrottled memtouch vCPU, measured with no tracking (same README).</summary>
    public const double UnthrottledWritesPerSecond = 5e6;

    /// <summary>Creates the chosen dirty log (not started). <paramref name="host"/> defaults to <see cref="HostCapabilities.Current"/>.</summary>
    public static IDirtyLog Create(GuestMemory memory, DirtyLogChoice choice, HostCapabilities? host = null, WorkloadSpec? workload = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        DirtyLogDecision decision = Decide(choice, host ?? HostCapabilities.Current, workload);
        if (decision.IsKernel && OperatingSystem.IsLinux())
        {
            return new KernelDirtyLog(memory, decision.Reason);
        }
        return new SoftwareDirtyLog(memory, decision.Reason);
    }

    /// <summary>Which backend <paramref name="choice"/> means on <paramref name="host"/>, with the reason for the report.</summary>
    /// <remarks>
    /// With a workload, auto compares the two costs for that workload class over a one-second
    /// round: the kernel log pays one write-protect fault per distinct page written, the software
    /// log one mark per write. Many rewrites of a small hot set favour the kernel; writes spread
    /// over a large working set favour the bitmap; an idle guest costs neither, and the bitmap's
    /// harvest is the cheaper one.
    /// </remarks>
    public static DirtyLogDecision Decide(DirtyLogChoice choice, HostCapabilities host, WorkloadSpec? workload = null)
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
                if (workload is not null)
                {
                    return DecideForWorkload(workload, cost);
                }
                string measured = string.Create(CultureInfo.InvariantCulture,
                    $"a write-protect fault costs {cost.TotalMicroseconds:0.0#} µs here (auto takes the kernel log at ≤ {AutoKernelMaxFaultCost.TotalMicroseconds:0.0#} µs)");
                return cost <= AutoKernelMaxFaultCost
                    ? new("kernel", $"{KernelReason} (auto: {measured})")
                    : new("software", $"software: {measured}; each page's first write per round would cost the guest more than the bitmap's mark per write, and a harvest milliseconds instead of microseconds (auto)");
            default:
                throw new ArgumentOutOfRangeException(nameof(choice), choice, "unknown dirty log choice");
        }
    }

    private static DirtyLogDecision DecideForWorkload(WorkloadSpec workload, TimeSpan faultCost)
    {
        var inv = CultureInfo.InvariantCulture;
        if (workload.Program == "idle")
        {
            return new("software", "software: idle guest, nothing to track and the bitmap harvests in microseconds (auto)");
        }
        double writes = workload.Rate > 0 ? workload.Rate : UnthrottledWritesPerSecond;
        double wss = Math.Max(1, PageSize.PagesFor(workload.WorkingSetBytes));
        // Most writes land in the hot part; that is what bounds the distinct pages per round.
        double hot = workload.Pattern switch
        {
            AccessPattern.HotCold => Math.Max(1, wss * workload.HotFraction),
            AccessPattern.Zipf => Math.Max(1, wss * 0.1),
            _ => wss,
        };
        double distinct = hot * (1 - Math.Exp(-writes / hot));
        double kernelUs = distinct * faultCost.TotalMicroseconds;
        double softwareUs = writes * SoftwareMarkCost.TotalMicroseconds;
        string why = string.Create(inv,
            $"{workload.Program} writes {writes:0} pages/s over ~{hot:0} hot pages: ~{distinct:0} write-protect faults/s × {faultCost.TotalMicroseconds:0.0#} µs = {kernelUs / 1000:0.#} ms/s for the kernel log vs {writes:0} marks × {SoftwareMarkCost.TotalMicroseconds:0.0#} µs = {softwareUs / 1000:0.#} ms/s for the bitmap (auto)");
        return kernelUs < softwareUs ? new("kernel", $"{KernelReason}: {why}") : new("software", "software: " + why);
    }
}
