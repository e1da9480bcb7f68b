using Ferry.Vm.Cpu;
using Ferry.Vm.Memory;

namespace Ferry.Vm.Programs;

/// <summary>
/// A guest program. All of its state lives in the vCPU registers and guest RAM; the object holds
/// only constants derived from the workload spec, so the destination rebuilds an identical one.
/// </summary>
public interface IGuestProgram
{
    /// <summary>True when the program does no work and its vCPUs should sleep (a halted CPU).</summary>
    bool IsIdle { get; }

    /// <summary>Sets the initial registers of vCPU <paramref name="vcpuIndex"/> of <paramref name="vcpuCount"/>.</summary>
    void Initialize(ref VcpuState state, int vcpuIndex, int vcpuCount, long guestPages);

    /// <summary>Runs at most <paramref name="budget"/> operations and returns how many ran. Returning is a VM exit.</summary>
    int Step(ref VcpuState state, GuestMemory memory, int budget);
}
