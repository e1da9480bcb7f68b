namespace Ferry.Tests.Support;

/// <summary>What a Linux-only test needs from the host beyond Linux itself.</summary>
[Flags]
public enum HostNeeds
{
    None = 0,

    /// <summary>A C compiler (gcc or cc on PATH) to check layouts against the system headers.</summary>
    CCompiler = 1,

    /// <summary>A userfaultfd this process may create.</summary>
    Userfaultfd = 2,

    /// <summary>userfaultfd WP_ASYNC + WP_UNPOPULATED and a working PAGEMAP_SCAN.</summary>
    KernelDirtyLog = 4,
}
