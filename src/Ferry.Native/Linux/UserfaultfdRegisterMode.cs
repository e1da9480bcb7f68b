namespace Ferry.Native.Linux;

/// <summary>UFFDIO_REGISTER_MODE_*: which faults a registered range reports.</summary>
[Flags]
public enum UserfaultfdRegisterMode : ulong
{
    /// <summary>Faults on pages that are not present (post-copy demand paging).</summary>
    Missing = 1UL << 0,

    /// <summary>Writes to write-protected pages (dirty tracking).</summary>
    WriteProtect = 1UL << 1,
}
