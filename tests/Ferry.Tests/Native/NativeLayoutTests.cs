using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ferry.Native.Interop;
using Ferry.Tests.Support;

namespace Ferry.Tests.Native;

/// <summary>
/// Every constant, struct size and field offset Ferry.Native declares for mmap, userfaultfd and
/// PAGEMAP_SCAN, compared with what gcc computes. Whatever the installed headers define is taken
/// from them; what they lack (Debian 12 ships 6.1 headers: no WP_UNPOPULATED, WP_ASYNC or
/// PAGEMAP_SCAN) is defined in the C program exactly as the 6.7+ uapi headers do, so at least the
/// ioctl number is still derived from the struct by the real _IOWR macro.
/// </summary>
public sealed class NativeLayoutTests
{
    private const string Source = """
        #include <stdio.h>
        #include <stddef.h>
        #include <fcntl.h>
        #include <sys/mman.h>
        #include <sys/syscall.h>
        #include <sys/ioctl.h>
        #include <linux/userfaultfd.h>
        #include <linux/fs.h>
        #include <poll.h>
        #include <netinet/in.h>
        #include <linux/tcp.h>

        #ifndef UFFD_FEATURE_WP_UNPOPULATED
        #define UFFD_FEATURE_WP_UNPOPULATED (1<<13)
        #endif
        #ifndef UFFD_FEATURE_WP_ASYNC
        #define UFFD_FEATURE_WP_ASYNC (1<<15)
        #endif
        #ifndef PAGEMAP_SCAN
        #define HEADERS_HAVE_PAGEMAP_SCAN 0
        struct page_region { __u64 start; __u64 end; __u64 categories; };
        struct pm_scan_arg {
            __u64 size; __u64 flags; __u64 start; __u64 end; __u64 walk_end; __u64 vec; __u64 vec_len;
            __u64 max_pages; __u64 category_inverted; __u64 category_mask; __u64 category_anyof_mask; __u64 return_mask;
        };
        #define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
        #define PM_SCAN_WP_MATCHING (1 << 0)
        #define PM_SCAN_CHECK_WPASYNC (1 << 1)
        #define PAGE_IS_WPALLOWED (1 << 0)
        #define PAGE_IS_WRITTEN (1 << 1)
        #define PAGE_IS_FILE (1 << 2)
        #define PAGE_IS_PRESENT (1 << 3)
        #define PAGE_IS_SWAPPED (1 << 4)
        #define PAGE_IS_PFNZERO (1 << 5)
        #define PAGE_IS_HUGE (1 << 6)
        #define PAGE_IS_SOFT_DIRTY (1 << 7)
        #else
        #define HEADERS_HAVE_PAGEMAP_SCAN 1
        #endif

        #define P(name) printf("%s=%llu\n", #name, (unsigned long long)(name))
        #define S(type) printf("sizeof(%s)=%zu\n", #type, sizeof(struct type))
        #define O(type, field) printf("offsetof(%s.%s)=%zu\n", #type, #field, offsetof(struct type, field))

        int main(void)
        {
            P(PROT_READ); P(PROT_WRITE); P(MAP_PRIVATE); P(MAP_ANONYMOUS); P(MAP_NORESERVE); P(MADV_DONTNEED);
            P(O_RDONLY); P(O_RDWR); P(O_NONBLOCK); P(O_CLOEXEC);
            P(SYS_userfaultfd); P(USERFAULTFD_IOC_NEW); P(UFFD_USER_MODE_ONLY); P(UFFD_API);
            P(UFFDIO_API); P(UFFDIO_REGISTER); P(UFFDIO_UNREGISTER); P(UFFDIO_WAKE); P(UFFDIO_COPY);
            P(UFFDIO_ZEROPAGE); P(UFFDIO_WRITEPROTECT); P(UFFDIO_CONTINUE);
            P(_UFFDIO_REGISTER); P(_UFFDIO_UNREGISTER); P(_UFFDIO_WAKE); P(_UFFDIO_COPY); P(_UFFDIO_ZEROPAGE);
            P(_UFFDIO_WRITEPROTECT); P(_UFFDIO_CONTINUE); P(_UFFDIO_API);
            P(UFFD_FEATURE_PAGEFAULT_FLAG_WP); P(UFFD_FEATURE_EVENT_FORK); P(UFFD_FEATURE_EVENT_REMAP);
            P(UFFD_FEATURE_EVENT_REMOVE); P(UFFD_FEATURE_MISSING_HUGETLBFS); P(UFFD_FEATURE_MISSING_SHMEM);
            P(UFFD_FEATURE_EVENT_UNMAP); P(UFFD_FEATURE_SIGBUS); P(UFFD_FEATURE_THREAD_ID); P(UFFD_FEATURE_EXACT_ADDRESS);
            P(UFFD_FEATURE_WP_UNPOPULATED); P(UFFD_FEATURE_WP_ASYNC);
            P(UFFDIO_REGISTER_MODE_MISSING); P(UFFDIO_REGISTER_MODE_WP); P(UFFDIO_REGISTER_MODE_MINOR);
            P(UFFDIO_WRITEPROTECT_MODE_WP); P(UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
            P(UFFD_EVENT_PAGEFAULT); P(UFFD_PAGEFAULT_FLAG_WRITE); P(UFFD_PAGEFAULT_FLAG_WP); P(UFFD_PAGEFAULT_FLAG_MINOR);
            S(uffdio_api); O(uffdio_api, api); O(uffdio_api, features); O(uffdio_api, ioctls);
            S(uffdio_range); O(uffdio_range, start); O(uffdio_range, len);
            S(uffdio_register); O(uffdio_register, range); O(uffdio_register, mode); O(uffdio_register, ioctls);
            S(uffdio_writeprotect); O(uffdio_writeprotect, range); O(uffdio_writeprotect, mode);
            S(uffdio_copy); O(uffdio_copy, dst); O(uffdio_copy, src); O(uffdio_copy, len); O(uffdio_copy, mode); O(uffdio_copy, copy);
            S(uffdio_zeropage); O(uffdio_zeropage, range); O(uffdio_zeropage, mode); O(uffdio_zeropage, zeropage);
            P(POLLIN); S(pollfd); O(pollfd, fd); O(pollfd, events); O(pollfd, revents);
            P(IPPROTO_TCP); P(TCP_INFO); O(tcp_info, tcpi_bytes_acked);
            S(uffd_msg); O(uffd_msg, event); O(uffd_msg, arg.pagefault.flags); O(uffd_msg, arg.pagefault.address);
            O(uffd_msg, arg.pagefault.feat.ptid);
            P(PAGEMAP_SCAN); P(PM_SCAN_WP_MATCHING); P(PM_SCAN_CHECK_WPASYNC);
            P(PAGE_IS_WPALLOWED); P(PAGE_IS_WRITTEN); P(PAGE_IS_FILE); P(PAGE_IS_PRESENT); P(PAGE_IS_SWAPPED);
            P(PAGE_IS_PFNZERO); P(PAGE_IS_HUGE); P(PAGE_IS_SOFT_DIRTY);
            S(page_region); O(page_region, start); O(page_region, end); O(page_region, categories);
            S(pm_scan_arg); O(pm_scan_arg, size); O(pm_scan_arg, flags); O(pm_scan_arg, start); O(pm_scan_arg, end);
            O(pm_scan_arg, walk_end); O(pm_scan_arg, vec); O(pm_scan_arg, vec_len); O(pm_scan_arg, max_pages);
            O(pm_scan_arg, category_inverted); O(pm_scan_arg, category_mask); O(pm_scan_arg, category_anyof_mask);
            O(pm_scan_arg, return_mask);
            P(HEADERS_HAVE_PAGEMAP_SCAN);
            return 0;
        }
        """;

    [LinuxFact(HostNeeds.CCompiler)]
    public void Constants_and_layouts_match_the_C_headers()
    {
        Dictionary<string, ulong> c = CProbeProgram.Run(HostRequirements.FindCCompiler()!, Source);
        var mismatches = new List<string>();
        foreach ((string name, ulong csharp) in Expected())
        {
            if (!c.TryGetValue(name, out ulong fromC))
            {
                mismatches.Add($"{name}: the C program printed nothing");
            }
            else if (fromC != csharp)
            {
                mismatches.Add($"{name}: C# 0x{csharp:x}, C 0x{fromC:x}");
            }
        }
        Assert.True(mismatches.Count == 0, "C# declarations differ from the C headers:\n" + string.Join("\n", mismatches));
        Assert.True(c.ContainsKey("HEADERS_HAVE_PAGEMAP_SCAN"), "probe output incomplete");
    }

    /// <summary>uffd_msg is read 32 bytes at a time; a wrong size would misparse every message after the first.</summary>
    [Fact]
    public void Uffd_msg_is_32_bytes_and_pm_scan_arg_96()
    {
        Assert.Equal(32, Unsafe.SizeOf<Libc.uffd_msg>());
        Assert.Equal(96, Unsafe.SizeOf<Libc.pm_scan_arg>());
        Assert.Equal(24, Unsafe.SizeOf<Libc.page_region>());
    }

    private static IEnumerable<(string Name, ulong Value)> Expected()
    {
        yield return ("PROT_READ", Libc.PROT_READ);
        yield return ("PROT_WRITE", Libc.PROT_WRITE);
        yield return ("MAP_PRIVATE", Libc.MAP_PRIVATE);
        yield return ("MAP_ANONYMOUS", Libc.MAP_ANONYMOUS);
        yield return ("MAP_NORESERVE", Libc.MAP_NORESERVE);
        yield return ("MADV_DONTNEED", Libc.MADV_DONTNEED);
        yield return ("O_RDONLY", Libc.O_RDONLY);
        yield return ("O_RDWR", Libc.O_RDWR);
        yield return ("O_NONBLOCK", Libc.O_NONBLOCK);
        yield return ("O_CLOEXEC", Libc.O_CLOEXEC);
        yield return ("SYS_userfaultfd", Libc.SYS_userfaultfd);
        yield return ("USERFAULTFD_IOC_NEW", Libc.USERFAULTFD_IOC_NEW);
        yield return ("UFFD_USER_MODE_ONLY", Libc.UFFD_USER_MODE_ONLY);
        yield return ("UFFD_API", Libc.UFFD_API);
        yield return ("UFFDIO_API", Libc.UFFDIO_API);
        yield return ("UFFDIO_REGISTER", Libc.UFFDIO_REGISTER);
        yield return ("UFFDIO_UNREGISTER", Libc.UFFDIO_UNREGISTER);
        yield return ("UFFDIO_WAKE", Libc.UFFDIO_WAKE);
        yield return ("UFFDIO_COPY", Libc.UFFDIO_COPY);
        yield return ("UFFDIO_ZEROPAGE", Libc.UFFDIO_ZEROPAGE);
        yield return ("UFFDIO_WRITEPROTECT", Libc.UFFDIO_WRITEPROTECT);
        yield return ("UFFDIO_CONTINUE", Libc.UFFDIO_CONTINUE);
        yield return ("_UFFDIO_REGISTER", Libc._UFFDIO_REGISTER);
        yield return ("_UFFDIO_UNREGISTER", Libc._UFFDIO_UNREGISTER);
        yield return ("_UFFDIO_WAKE", Libc._UFFDIO_WAKE);
        yield return ("_UFFDIO_COPY", Libc._UFFDIO_COPY);
        yield return ("_UFFDIO_ZEROPAGE", Libc._UFFDIO_ZEROPAGE);
        yield return ("_UFFDIO_WRITEPROTECT", Libc._UFFDIO_WRITEPROTECT);
        yield return ("_UFFDIO_CONTINUE", Libc._UFFDIO_CONTINUE);
        yield return ("_UFFDIO_API", Libc._UFFDIO_API);
        yield return ("UFFD_FEATURE_PAGEFAULT_FLAG_WP", Libc.UFFD_FEATURE_PAGEFAULT_FLAG_WP);
        yield return ("UFFD_FEATURE_EVENT_FORK", Libc.UFFD_FEATURE_EVENT_FORK);
        yield return ("UFFD_FEATURE_EVENT_REMAP", Libc.UFFD_FEATURE_EVENT_REMAP);
        yield return ("UFFD_FEATURE_EVENT_REMOVE", Libc.UFFD_FEATURE_EVENT_REMOVE);
        yield return ("UFFD_FEATURE_MISSING_HUGETLBFS", Libc.UFFD_FEATURE_MISSING_HUGETLBFS);
        yield return ("UFFD_FEATURE_MISSING_SHMEM", Libc.UFFD_FEATURE_MISSING_SHMEM);
        yield return ("UFFD_FEATURE_EVENT_UNMAP", Libc.UFFD_FEATURE_EVENT_UNMAP);
        yield return ("UFFD_FEATURE_SIGBUS", Libc.UFFD_FEATURE_SIGBUS);
        yield return ("UFFD_FEATURE_THREAD_ID", Libc.UFFD_FEATURE_THREAD_ID);
        yield return ("UFFD_FEATURE_EXACT_ADDRESS", Libc.UFFD_FEATURE_EXACT_ADDRESS);
        yield return ("UFFD_FEATURE_WP_UNPOPULATED", Libc.UFFD_FEATURE_WP_UNPOPULATED);
        yield return ("UFFD_FEATURE_WP_ASYNC", Libc.UFFD_FEATURE_WP_ASYNC);
        yield return ("UFFDIO_REGISTER_MODE_MISSING", Libc.UFFDIO_REGISTER_MODE_MISSING);
        yield return ("UFFDIO_REGISTER_MODE_WP", Libc.UFFDIO_REGISTER_MODE_WP);
        yield return ("UFFDIO_REGISTER_MODE_MINOR", Libc.UFFDIO_REGISTER_MODE_MINOR);
        yield return ("UFFDIO_WRITEPROTECT_MODE_WP", Libc.UFFDIO_WRITEPROTECT_MODE_WP);
        yield return ("UFFDIO_WRITEPROTECT_MODE_DONTWAKE", Libc.UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
        yield return ("UFFD_EVENT_PAGEFAULT", Libc.UFFD_EVENT_PAGEFAULT);
        yield return ("UFFD_PAGEFAULT_FLAG_WRITE", Libc.UFFD_PAGEFAULT_FLAG_WRITE);
        yield return ("UFFD_PAGEFAULT_FLAG_WP", Libc.UFFD_PAGEFAULT_FLAG_WP);
        yield return ("UFFD_PAGEFAULT_FLAG_MINOR", Libc.UFFD_PAGEFAULT_FLAG_MINOR);

        yield return Size<Libc.uffdio_api>("uffdio_api");
        yield return Offset<Libc.uffdio_api>("uffdio_api", "api");
        yield return Offset<Libc.uffdio_api>("uffdio_api", "features");
        yield return Offset<Libc.uffdio_api>("uffdio_api", "ioctls");
        yield return Size<Libc.uffdio_range>("uffdio_range");
        yield return Offset<Libc.uffdio_range>("uffdio_range", "start");
        yield return Offset<Libc.uffdio_range>("uffdio_range", "len");
        yield return Size<Libc.uffdio_register>("uffdio_register");
        yield return Offset<Libc.uffdio_register>("uffdio_register", "range");
        yield return Offset<Libc.uffdio_register>("uffdio_register", "mode");
        yield return Offset<Libc.uffdio_register>("uffdio_register", "ioctls");
        yield return Size<Libc.uffdio_writeprotect>("uffdio_writeprotect");
        yield return Offset<Libc.uffdio_writeprotect>("uffdio_writeprotect", "range");
        yield return Offset<Libc.uffdio_writeprotect>("uffdio_writeprotect", "mode");
        yield return Size<Libc.uffdio_copy>("uffdio_copy");
        foreach (string f in new[] { "dst", "src", "len", "mode", "copy" })
        {
            yield return Offset<Libc.uffdio_copy>("uffdio_copy", f);
        }
        yield return Size<Libc.uffdio_zeropage>("uffdio_zeropage");
        foreach (string f in new[] { "range", "mode", "zeropage" })
        {
            yield return Offset<Libc.uffdio_zeropage>("uffdio_zeropage", f);
        }
        yield return ("POLLIN", (ulong)Libc.POLLIN);
        yield return Size<Libc.pollfd>("pollfd");
        foreach (string f in new[] { "fd", "events", "revents" })
        {
            yield return Offset<Libc.pollfd>("pollfd", f);
        }
        yield return ("IPPROTO_TCP", (ulong)Libc.IPPROTO_TCP);
        yield return ("TCP_INFO", (ulong)Libc.TCP_INFO);
        yield return ("offsetof(tcp_info.tcpi_bytes_acked)", (ulong)Libc.TcpInfoBytesAckedOffset);
        yield return Size<Libc.uffd_msg>("uffd_msg");
        yield return Offset<Libc.uffd_msg>("uffd_msg", "@event", "event");
        yield return Offset<Libc.uffd_msg>("uffd_msg", "pagefault_flags", "arg.pagefault.flags");
        yield return Offset<Libc.uffd_msg>("uffd_msg", "pagefault_address", "arg.pagefault.address");
        yield return Offset<Libc.uffd_msg>("uffd_msg", "pagefault_feat_ptid", "arg.pagefault.feat.ptid");

        yield return ("PAGEMAP_SCAN", Libc.PAGEMAP_SCAN);
        yield return ("PM_SCAN_WP_MATCHING", Libc.PM_SCAN_WP_MATCHING);
        yield return ("PM_SCAN_CHECK_WPASYNC", Libc.PM_SCAN_CHECK_WPASYNC);
        yield return ("PAGE_IS_WPALLOWED", Libc.PAGE_IS_WPALLOWED);
        yield return ("PAGE_IS_WRITTEN", Libc.PAGE_IS_WRITTEN);
        yield return ("PAGE_IS_FILE", Libc.PAGE_IS_FILE);
        yield return ("PAGE_IS_PRESENT", Libc.PAGE_IS_PRESENT);
        yield return ("PAGE_IS_SWAPPED", Libc.PAGE_IS_SWAPPED);
        yield return ("PAGE_IS_PFNZERO", Libc.PAGE_IS_PFNZERO);
        yield return ("PAGE_IS_HUGE", Libc.PAGE_IS_HUGE);
        yield return ("PAGE_IS_SOFT_DIRTY", Libc.PAGE_IS_SOFT_DIRTY);
        yield return Size<Libc.page_region>("page_region");
        foreach (string f in new[] { "start", "end", "categories" })
        {
            yield return Offset<Libc.page_region>("page_region", f);
        }
        yield return Size<Libc.pm_scan_arg>("pm_scan_arg");
        foreach (string f in new[] { "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
                     "category_inverted", "category_mask", "category_anyof_mask", "return_mask" })
        {
            yield return Offset<Libc.pm_scan_arg>("pm_scan_arg", f);
        }
    }

    private static (string, ulong) Size<T>(string cName) where T : unmanaged => ($"sizeof({cName})", (ulong)Unsafe.SizeOf<T>());

    private static (string, ulong) Offset<T>(string cName, string field, string? cField = null) where T : unmanaged =>
        ($"offsetof({cName}.{cField ?? field})", (ulong)Marshal.OffsetOf<T>(field.TrimStart('@')));
}
