namespace Ferry.Native.Linux;

/// <summary>How a userfaultfd was (or can be) created; the probe tries them in this order.</summary>
public enum UserfaultfdAccess
{
    /// <summary>No way worked: no userfaultfd on this host for this process.</summary>
    None,

    /// <summary>userfaultfd(2): needs root, CAP_SYS_PTRACE or vm.unprivileged_userfaultfd = 1.</summary>
    Syscall,

    /// <summary>open("/dev/userfaultfd") + USERFAULTFD_IOC_NEW: needs access to the device node (0600 root by default).</summary>
    DeviceNode,

    /// <summary>userfaultfd(2) with UFFD_USER_MODE_ONLY: open to everyone, but only faults from user mode are handled.</summary>
    UserModeOnly,
}
