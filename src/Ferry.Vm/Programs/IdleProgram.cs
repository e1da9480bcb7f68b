using Ferry.Vm.Cpu;
using Ferry.Vm.Memory;

namespace Ferry.Vm.Programs;

/// <summary>A guest that does nothing: its vCPUs halt.</summary>
public sealed class IdleProgram : IGuestProgram
{
    public bool IsIdle => true;

    public void Initialize(ref VcpuState state, int vcpuIndex, int vcpuCount, long guestPages)
    {
    }

    public int Step(ref VcpuState state, GuestMemory memory, int budget) => 0;
}
