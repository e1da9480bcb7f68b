using Ferry.Core.Workloads;

namespace Ferry.Vm.Programs;

public static class GuestProgramFactory
{
    public static IGuestProgram Create(WorkloadSpec spec) => spec.Program switch
    {
        "idle" => new IdleProgram(),
        "memtouch" => new MemTouchProgram(spec),
        _ => throw new ArgumentException($"unknown guest program '{spec.Program}'", nameof(spec)),
    };
}
