using Ferry.Core.Tracking;
using Ferry.Vm.Memory;
using Ferry.Vm.Tracking;

namespace Ferry.Bench.Tracking;

/// <summary>The two dirty-log backends by name, built directly so each is measured even where auto would not pick it.</summary>
internal static class Backends
{
    public static readonly string[] Names = ["software", "kernel"];

    public static IDirtyLog Create(string name, GuestMemory memory) => name switch
    {
        "software" => new SoftwareDirtyLog(memory),
        "kernel" => new KernelDirtyLog(memory),
        _ => throw new ArgumentException($"unknown backend '{name}'", nameof(name)),
    };
}
