using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Vm.Memory;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Kernel;

/// <summary>Builds either backend by name, so one test body checks both against the same expectations.</summary>
internal static class DirtyLogHarness
{
    public static IDirtyLog Create(string backend, GuestMemory memory) => backend switch
    {
        "kernel" when OperatingSystem.IsLinux() => new KernelDirtyLog(memory),
        "software" => new SoftwareDirtyLog(memory),
        _ => throw new ArgumentException($"no dirty log '{backend}' here", nameof(backend)),
    };

    public static long[] Pages(DirtyBitmap bitmap)
    {
        var list = new List<long>();
        foreach (long p in bitmap)
        {
            list.Add(p);
        }
        return [.. list];
    }
}
