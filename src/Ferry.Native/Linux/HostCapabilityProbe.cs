using System.Diagnostics;
using System.Runtime.Versioning;
using Ferry.Native.Interop;

namespace Ferry.Native.Linux;

/// <summary>
/// Builds <see cref="HostCapabilities"/> by trying things on throwaway objects: one uffd per
/// question (UFFDIO_API is allowed once per fd), small private mappings that are unmapped again.
/// A failing step records why and never throws, so the probe itself cannot take a process down.
/// </summary>
internal static class HostCapabilityProbe
{
    /// <summary>Probe region for the scan check and fault timing: small, so populating it costs ~1 ms even at 20 µs per fault.</summary>
    private const int ProbePages = 64;

    /// <summary>Timed rounds of "write every probe page once, then scan"; the median is reported.</summary>
    private const int TimedRounds = 5;

    public static HostCapabilities Run()
    {
        if (!OperatingSystem.IsLinux())
        {
            return new HostCapabilities { IsLinux = false, KernelRelease = System.Runtime.InteropServices.RuntimeInformation.OSDescription };
        }
        var caps = new HostCapabilities
        {
            IsLinux = true,
            KernelRelease = ReadKernelRelease(),
            IsRoot = Libc.geteuid() == 0,
            KernelPageSize = Environment.SystemPageSize,
        };
        UserfaultfdAccess access = UserfaultfdAccess.None;
        int firstErrno = 0;
        foreach (UserfaultfdAccess candidate in new[] { UserfaultfdAccess.Syscall, UserfaultfdAccess.DeviceNode, UserfaultfdAccess.UserModeOnly })
        {
            if (Userfaultfd.TryOpen(candidate, out Userfaultfd? uffd, out int errno))
            {
                uffd.Dispose();
                access = candidate;
                break;
            }
            firstErrno = firstErrno == 0 ? errno : firstErrno;
        }
        if (access == UserfaultfdAccess.None)
        {
            return caps with { UserfaultfdError = $"{Libc.ErrnoText(firstErrno)} (errno {firstErrno})" };
        }
        caps = caps with { UserfaultfdAccess = access };
        try
        {
            using Userfaultfd uffd = Userfaultfd.Open(access);
            caps = caps with { Features = uffd.Handshake(UserfaultfdFeatures.None).Supported };
        }
        catch (NativeCallException ex)
        {
            return caps with { UserfaultfdAccess = UserfaultfdAccess.None, UserfaultfdError = ex.Message };
        }
        caps = caps with { MissingMode = ProbeMissingMode(access) };
        if (caps.HasWriteProtect && caps.HasWpAsync && caps.HasWpUnpopulated)
        {
            (bool works, string? error, TimeSpan? cost) = ProbeScan(access);
            caps = caps with { PagemapScanWorks = works, PagemapScanError = error, WriteProtectFaultCost = cost };
        }
        else
        {
            caps = caps with { PagemapScanError = "not probed: needs userfaultfd WP_ASYNC and WP_UNPOPULATED" };
        }
        return caps;
    }

    private static string ReadKernelRelease()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        }
        catch (IOException)
        {
            return Environment.OSVersion.VersionString;
        }
    }

    /// <summary>Registers one untouched page in MISSING mode and checks the post-copy ioctls. Never faults on it.</summary>
    [SupportedOSPlatform("linux")]
    private static bool ProbeMissingMode(UserfaultfdAccess access)
    {
        try
        {
            using var mapping = new AnonymousMapping(Environment.SystemPageSize);
            using Userfaultfd uffd = Userfaultfd.Open(access);
            uffd.Handshake(UserfaultfdFeatures.None);
            UserfaultfdIoctls ioctls = uffd.Register(mapping, 0, mapping.Length, UserfaultfdRegisterMode.Missing);
            uffd.Unregister(mapping, 0, mapping.Length);
            return ioctls.HasFlag(UserfaultfdIoctls.Copy) && ioctls.HasFlag(UserfaultfdIoctls.ZeroPage);
        }
        catch (NativeCallException)
        {
            return false;
        }
    }

    /// <summary>
    /// The kernel dirty-log recipe on a probe region: register WP_ASYNC, protect, write a known
    /// set of pages, scan: the scan must report exactly that set, and a rescan nothing. Then times
    /// first writes to protected pages.
    /// </summary>
    [SupportedOSPlatform("linux")]
    private static (bool Works, string? Error, TimeSpan? FaultCost) ProbeScan(UserfaultfdAccess access)
    {
        int page = Environment.SystemPageSize;
        try
        {
            using var mapping = new AnonymousMapping((long)ProbePages * page);
            for (int p = 0; p < ProbePages; p++)
            {
                // Populate first, so the timing below measures write-protect faults, not allocation.
                mapping.GetSpan((long)p * page, 1)[0] = 1;
            }
            using Userfaultfd uffd = Userfaultfd.Open(access);
            uffd.Handshake(UserfaultfdFeatures.WpAsync | UserfaultfdFeatures.WpUnpopulated);
            uffd.Register(mapping, 0, mapping.Length, UserfaultfdRegisterMode.WriteProtect);
            uffd.WriteProtect(mapping, 0, mapping.Length, protect: true);
            using var scanner = new PagemapScanner();

            int[] written = [0, 5, 6, ProbePages - 1];
            foreach (int p in written)
            {
                mapping.GetSpan((long)p * page, 1)[0] = 2;
            }
            var sink = new PageListSink(page);
            scanner.ScanWrittenAndProtect(mapping, 0, mapping.Length, ref sink);
            string got = string.Join(",", sink.Pages);
            if (got != string.Join(",", written))
            {
                return (false, $"scan reported pages [{got}] after writes to [{string.Join(",", written)}]", null);
            }
            var again = new PageListSink(page);
            scanner.ScanWrittenAndProtect(mapping, 0, mapping.Length, ref again);
            if (again.Pages.Count != 0)
            {
                return (false, $"a rescan reported {again.Pages.Count} pages, expected none", null);
            }

            var perPage = new double[TimedRounds];
            for (int round = 0; round < TimedRounds; round++)
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int p = 0; p < ProbePages; p++)
                {
                    mapping.GetSpan((long)p * page, 1)[0] = (byte)round;
                }
                perPage[round] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds / ProbePages;
                var drain = new PageListSink(page);
                scanner.ScanWrittenAndProtect(mapping, 0, mapping.Length, ref drain);
            }
            Array.Sort(perPage);
            return (true, null, TimeSpan.FromMicroseconds(perPage[TimedRounds / 2]));
        }
        catch (NativeCallException ex)
        {
            return (false, ex.Message, null);
        }
    }

    /// <summary>Collects reported pages as page numbers (the probe region is tiny).</summary>
    private struct PageListSink(int pageSize) : IWrittenRangeSink
    {
        public List<long> Pages { get; } = [];

        public readonly void Add(long startOffset, long endOffset)
        {
            for (long o = startOffset; o < endOffset; o += pageSize)
            {
                Pages.Add(o / pageSize);
            }
        }
    }
}
