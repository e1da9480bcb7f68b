namespace Ferry.Native.Linux;

/// <summary>UFFD_FEATURE_* bits (uffdio_api.features) that Ferry names; the values are the kernel's.</summary>
[Flags]
public enum UserfaultfdFeatures : ulong
{
    None = 0,

    /// <summary>UFFD_FEATURE_PAGEFAULT_FLAG_WP: write-protect mode exists (UFFDIO_REGISTER_MODE_WP).</summary>
    PagefaultFlagWp = 1UL << 0,

    /// <summary>UFFD_FEATURE_EVENT_REMOVE: madvise(DONTNEED) on a registered range is reported.</summary>
    EventRemove = 1UL << 3,

    /// <summary>UFFD_FEATURE_THREAD_ID: fault messages carry the faulting thread's id.</summary>
    ThreadId = 1UL << 8,

    /// <summary>UFFD_FEATURE_EXACT_ADDRESS: fault addresses are not rounded down to the page.</summary>
    ExactAddress = 1UL << 11,

    /// <summary>UFFD_FEATURE_WP_UNPOPULATED (6.4+): pages never touched are write-protected too.</summary>
    WpUnpopulated = 1UL << 13,

    /// <summary>UFFD_FEATURE_WP_ASYNC (6.7+): the kernel resolves WP faults itself and records the page as written.</summary>
    WpAsync = 1UL << 15,
}
