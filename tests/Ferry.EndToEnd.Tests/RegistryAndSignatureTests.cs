using Ferry.Agent.Api;
using Ferry.Agent.Hosting;
using Ferry.Agent.Vms;
using Ferry.Protocol.Handshake;
using Ferry.Vm.Machine;

namespace Ferry.EndToEnd.Tests;

/// <summary>The agent's admission rules (ids and budget from the offer on, forced resume) and the signature's new fields, without processes.</summary>
public sealed class RegistryAndSignatureTests
{
    private static readonly ClusterKey Key = new("registry-test-cluster-key-0123456"u8);

    private static VmRegistry Registry(long budget) => new(new AgentOptions
    {
        ApiEndpoint = System.Net.IPEndPoint.Parse("127.0.0.1:0"),
        MigrationEndpoint = System.Net.IPEndPoint.Parse("127.0.0.1:0"),
        Key = Key,
        MemoryBudgetBytes = budget,
    });

    private static VirtualMachine Vm(string id, long memory = 4L << 20) =>
        VirtualMachine.Create(new VmConfig { Id = id, MemoryBytes = memory, Vcpus = 1, Workload = "idle" });

    [Fact]
    public void An_id_reserved_at_an_offer_refuses_a_second_offer_and_a_create_until_it_is_released()
    {
        using VmRegistry vms = Registry(1L << 30);
        Assert.Equal(VmRegistry.AdmitResult.Admitted, vms.TryReserve("twin", 4L << 20));
        Assert.Equal(VmRegistry.AdmitResult.IdArriving, vms.TryReserve("twin", 4L << 20));
        Assert.Equal(VmRegistry.AdmitResult.IdArriving, vms.CheckCreate("twin", 4L << 20));
        using (VirtualMachine early = Vm("twin"))
        {
            Assert.False(vms.TryAdd(early));
        }
        Assert.Contains("already migrating to this agent", vms.Describe(VmRegistry.AdmitResult.IdArriving, "twin", 0));
        vms.ReleaseReservation("twin");
        Assert.Equal(0, vms.CommittedBytes);
        Assert.Equal(VmRegistry.AdmitResult.Admitted, vms.TryReserve("twin", 4L << 20));
        vms.AddArrived(Vm("twin"));
        Assert.Equal(VmRegistry.AdmitResult.IdTaken, vms.TryReserve("twin", 4L << 20));
        Assert.Equal(4L << 20, vms.CommittedBytes);
    }

    [Fact]
    public void The_budget_counts_VMs_and_reservations_and_is_given_back_on_delete()
    {
        using VmRegistry vms = Registry(10L << 20);
        Assert.True(vms.TryAdd(Vm("a", 4L << 20)));
        Assert.Equal(VmRegistry.AdmitResult.Admitted, vms.TryReserve("b", 4L << 20));
        Assert.Equal(VmRegistry.AdmitResult.OverBudget, vms.CheckCreate("c", 4L << 20));
        Assert.Equal(VmRegistry.AdmitResult.OverBudget, vms.TryReserve("c", 4L << 20));
        Assert.Contains("budget", vms.Describe(VmRegistry.AdmitResult.OverBudget, "c", 4L << 20));
        Assert.Equal(VmRegistry.DeleteResult.Deleted, vms.Delete("a"));
        Assert.Equal(VmRegistry.AdmitResult.Admitted, vms.CheckCreate("c", 4L << 20));
    }

    [Fact]
    public void A_VM_kept_paused_after_an_unconfirmed_switchover_resumes_only_when_forced()
    {
        using VmRegistry vms = Registry(1L << 30);
        VirtualMachine vm = Vm("kept");
        Assert.True(vms.TryAdd(vm));
        vm.Start();
        Assert.Equal(VmRegistry.ResumeResult.NotPaused, vms.Resume("kept", force: true));
        Assert.True(vms.TryBeginMigration("kept", out _));
        Assert.Equal(VmRegistry.ResumeResult.Migrating, vms.Resume("kept", force: true));
        vm.Pause();
        vms.EndMigration("kept", "kept paused", keptPaused: true);
        Assert.Equal(VmRegistry.ResumeResult.NeedsForce, vms.Resume("kept", force: false));
        Assert.Equal(VmRunState.Paused, vm.State);
        Assert.Equal(VmRegistry.ResumeResult.Resumed, vms.Resume("kept", force: true));
        Assert.Equal(VmRunState.Running, vm.State);
        Assert.Equal(VmRegistry.ResumeResult.NotFound, vms.Resume("nope", force: true));
    }

    [Fact]
    public void A_signature_names_its_agent_and_a_huge_timestamp_is_a_reason_not_an_exception()
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        string header = ApiSignature.Sign(Key, "127.0.0.1:7101", "DELETE", "/v1/vms/x", [], now);
        Assert.Null(ApiSignature.Verify(Key, header, "127.0.0.1:7101", "DELETE", "/v1/vms/x", [], now, out _));
        Assert.Contains("another agent", ApiSignature.Verify(Key, header, "127.0.0.1:7102", "DELETE", "/v1/vms/x", [], now, out _));
        foreach (string t in new[] { "1000000000000000", "9223372036854775807", "0" })
        {
            Assert.Equal("signature timestamp outside ±60 s", ApiSignature.Parse($"t={t},n=0123456789abcdef,s=00", now, out _));
        }
        Assert.Equal("bad signature timestamp", ApiSignature.Parse("t=99999999999999999999999,n=0123456789abcdef,s=00", now, out _));
    }
}
