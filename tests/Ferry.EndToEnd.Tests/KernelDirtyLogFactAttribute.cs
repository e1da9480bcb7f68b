using Ferry.Native.Linux;

namespace Ferry.EndToEnd.Tests;

/// <summary>A test that needs the kernel dirty log; skipped, with the host's reason, where it is missing.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class KernelDirtyLogFactAttribute : FactAttribute
{
    public KernelDirtyLogFactAttribute()
    {
        if (!OperatingSystem.IsLinux())
        {
            Skip = "needs Linux";
        }
        else if (HostCapabilities.Current.KernelDirtyLogMissing is { } missing)
        {
            Skip = "needs the kernel dirty log: " + missing;
        }
    }
}
