using Ferry.Native.Linux;

namespace Ferry.Tests.Support;

/// <summary>Answers "can this test run here, and if not why", from the same HostCapabilities the product uses.</summary>
public static class HostRequirements
{
    /// <summary>Null when the host has everything; otherwise the skip reason.</summary>
    public static string? WhyNot(HostNeeds needs)
    {
        if (!OperatingSystem.IsLinux())
        {
            return "needs Linux";
        }
        if (needs.HasFlag(HostNeeds.CCompiler) && FindCCompiler() is null)
        {
            return "needs a C compiler (gcc or cc on PATH) to check struct layouts against the kernel headers";
        }
        HostCapabilities caps = HostCapabilities.Current;
        if ((needs.HasFlag(HostNeeds.Userfaultfd) || needs.HasFlag(HostNeeds.KernelDirtyLog)) && !caps.HasUserfaultfd)
        {
            return $"needs userfaultfd: {caps.UserfaultfdError}";
        }
        if (needs.HasFlag(HostNeeds.KernelDirtyLog) && caps.KernelDirtyLogMissing is { } missing)
        {
            return $"needs the kernel dirty log: {missing}";
        }
        return null;
    }

    /// <summary>The first of gcc, cc found on PATH, or null.</summary>
    public static string? FindCCompiler()
    {
        string[] dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        foreach (string name in new[] { "gcc", "cc" })
        {
            foreach (string dir in dirs)
            {
                string path = Path.Combine(dir, name);
                if (File.Exists(path))
                {
                    return path;
                }
            }
        }
        return null;
    }
}
