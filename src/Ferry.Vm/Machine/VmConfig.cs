using Ferry.Core.Workloads;

namespace Ferry.Vm.Machine;

public enum RamFill { None, Zero, Text, Random, Mix }

/// <summary>Everything needed to build a VM; travels with a migration so the destination builds the same one.</summary>
public sealed record VmConfig
{
    public const long MaxMemoryBytes = 1L << 40;

    public string Id { get; init; } = Guid.NewGuid().ToString("n")[..12];
    public string Name { get; init; } = "vm";
    public long MemoryBytes { get; init; } = 1L << 30;
    public int Vcpus { get; init; } = 1;
    public string Workload { get; init; } = "idle";

    /// <summary>Initial RAM content written before the VM starts (the bench's "pages hold random bytes").</summary>
    public RamFill Fill { get; init; } = RamFill.None;

    /// <summary>Each vCPU stops after this many operations (for deterministic runs); null = run forever.</summary>
    public long? OpsLimitPerVcpu { get; init; }

    public void Validate()
    {
        if (MemoryBytes < 4096 || MemoryBytes > MaxMemoryBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(MemoryBytes), $"memory must be between 4 KiB and 1 TiB, got {MemoryBytes}");
        }
        if (Vcpus < 1 || Vcpus > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(Vcpus), $"vcpus must be between 1 and 64, got {Vcpus}");
        }
        if (!WorkloadSpec.TryParse(Workload, out _, out string error))
        {
            throw new ArgumentException(error, nameof(Workload));
        }
        if (OpsLimitPerVcpu is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(OpsLimitPerVcpu), "ops limit must not be negative");
        }
        if (string.IsNullOrWhiteSpace(Id) || Id.Length > 64 || Id.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_')))
        {
            throw new ArgumentException("id must be 1-64 characters of letters, digits, '-' or '_'", nameof(Id));
        }
    }
}
