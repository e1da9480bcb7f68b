using Ferry.Vm.Machine;

namespace Ferry.Tests.Support;

/// <summary>
/// Equivalence checks (design.md §2): an ops-limited guest run to its end without migrating, and
/// the migrated copy run to its end, must leave the same memory.
/// </summary>
internal static class ReferenceRun
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>The memory digest an ops-limited guest of <paramref name="config"/> ends with when nothing migrates it.</summary>
    public static ulong Digest(VmConfig config)
    {
        using var reference = VirtualMachine.Create(config);
        reference.Start();
        Assert.True(reference.WaitFinished(Bound), "reference run did not finish within 60 s");
        reference.Pause();
        return reference.Memory.ComputeDigest();
    }

    /// <summary>Runs the migrated guest to its ops limit and checks it ends with <paramref name="expected"/>.</summary>
    public static void AssertFinishesWith(VirtualMachine migrated, ulong expected)
    {
        Assert.True(migrated.WaitFinished(Bound), "migrated run did not finish within 60 s");
        migrated.Pause();
        Assert.Equal(expected, migrated.Memory.ComputeDigest());
    }
}
