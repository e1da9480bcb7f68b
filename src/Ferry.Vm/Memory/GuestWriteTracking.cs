namespace Ferry.Vm.Memory;

/// <summary>Who records guest writes: nobody, the memory API (software bitmap), or the kernel (uffd WP_ASYNC).</summary>
internal enum GuestWriteTracking
{
    None,
    Software,
    Kernel,
}
