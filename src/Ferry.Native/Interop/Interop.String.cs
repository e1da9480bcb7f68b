using System.Runtime.InteropServices;

namespace Ferry.Native.Interop;

internal static unsafe partial class Libc
{
    /// <summary>
    /// memcpy(3) as an ordinary P/Invoke. Never add SuppressGCTransition here: the GC transition
    /// is the point. It puts the calling thread in preemptive mode for the copy, so a userfaultfd
    /// MISSING fault inside it can block without holding up a garbage collection (kernel.md,
    /// Probe 2, rule c). NativeAccessTests checks the attribute stays off.
    /// </summary>
    [LibraryImport("libc")]
    internal static partial void* memcpy(void* destination, void* source, nuint count);
}
