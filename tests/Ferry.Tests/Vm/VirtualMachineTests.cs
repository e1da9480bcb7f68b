using System.Diagnostics;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Vm;

public sealed class VirtualMachineTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static VmConfig Config(string workload, long? opsLimit = null, int vcpus = 2, RamFill fill = RamFill.None) => new()
    {
        Id = "vmtest",
        MemoryBytes = 16L << 20,
        Vcpus = vcpus,
        Workload = workload,
        OpsLimitPerVcpu = opsLimit,
        Fill = fill,
    };

    private static ulong FinishedDigest(VmConfig config)
    {
        using var vm = VirtualMachine.Create(config);
        vm.Start();
        Assert.True(vm.WaitFinished(Limit), "the guest did not reach its ops limit");
        vm.Pause();
        Assert.Equal((ulong)(config.OpsLimitPerVcpu!.Value * config.Vcpus), vm.TotalOps);
        return vm.Memory.ComputeDigest();
    }

    [Theory]
    [InlineData("memtouch:wss=8MiB,pattern=uniform,content=random,seed=5", RamFill.None)]
    [InlineData("memtouch:wss=8MiB,pattern=zipf,content=mix,seed=5", RamFill.Mix)]
    [InlineData("memtouch:wss=4MiB,pattern=hot-cold,content=text,seed=5", RamFill.Random)]
    public void Same_seed_gives_the_same_memory_and_another_seed_does_not(string workload, RamFill fill)
    {
        VmConfig config = Config(workload, opsLimit: 20_000, fill: fill);
        ulong first = FinishedDigest(config);
        Assert.Equal(first, FinishedDigest(config));
        Assert.NotEqual(first, FinishedDigest(config with { Workload = workload.Replace("seed=5", "seed=6") }));
    }

    [Fact]
    public void Pause_stops_the_guest_and_resume_restarts_it()
    {
        using var vm = VirtualMachine.Create(Config("memtouch:rate=50000,wss=4MiB", vcpus: 2));
        Assert.Equal(VmRunState.Created, vm.State);
        vm.Start();
        Assert.Equal(VmRunState.Running, vm.State);
        Bounded.WaitUntil(() => vm.TotalOps > 100, Limit, "the guest runs");
        Assert.Throws<InvalidOperationException>(() => vm.SnapshotVcpus());

        vm.Pause();
        Assert.Equal(VmRunState.Paused, vm.State);
        ulong paused = vm.TotalOps;
        ulong digest = vm.Memory.ComputeDigest();
        Thread.Sleep(100); // time in which a running guest would do thousands of operations
        Assert.Equal(paused, vm.TotalOps);
        Assert.Equal(digest, vm.Memory.ComputeDigest());
        Assert.Equal(paused, (ulong)vm.SnapshotVcpus().Sum(v => (long)v.Ops));

        vm.Resume();
        Assert.Equal(VmRunState.Running, vm.State);
        Bounded.WaitUntil(() => vm.TotalOps > paused + 100, Limit, "the guest runs again after resume");
    }

    [Fact]
    public void Rate_limit_bounds_the_work_done()
    {
        // Only an upper bound: a busy machine may run the guest slower, never faster.
        const double Rate = 20_000;
        using var vm = VirtualMachine.Create(Config($"memtouch:rate={Rate},wss=4MiB", vcpus: 2));
        long t0 = Stopwatch.GetTimestamp();
        vm.Start();
        Thread.Sleep(400);
        ulong ops = vm.TotalOps;
        double elapsed = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        double bound = Rate * elapsed * 1.5 + Rate * 0.1 + 2 * 512;
        Assert.True(ops <= bound, $"{ops} ops in {elapsed:0.000} s at {Rate}/s (bound {bound:0})");
        Assert.True(ops > 0, "the guest did nothing at all");
    }

    [Fact]
    public void Rate_limit_does_not_allow_a_burst_after_a_pause()
    {
        const double Rate = 20_000;
        using var vm = VirtualMachine.Create(Config($"memtouch:rate={Rate},wss=4MiB", vcpus: 1));
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 100, Limit, "the guest runs");
        vm.Pause();
        Thread.Sleep(300);
        ulong before = vm.TotalOps;
        long t0 = Stopwatch.GetTimestamp();
        vm.Resume();
        Thread.Sleep(100);
        ulong ops = vm.TotalOps - before;
        double elapsed = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        double bound = Rate * elapsed * 1.5 + Rate * 0.1 + 512;
        Assert.True(ops <= bound, $"{ops} ops in {elapsed:0.000} s after a 300 ms pause (bound {bound:0})");
    }

    [Fact]
    public void Idle_guest_does_no_work()
    {
        using var vm = VirtualMachine.Create(Config("idle"));
        vm.Start();
        Thread.Sleep(50);
        Assert.Equal(0UL, vm.TotalOps);
        Assert.Equal(0, vm.Memory.PopulatedCount());
    }

    [Fact]
    public void Lifecycle_misuse_is_refused()
    {
        using var vm = VirtualMachine.Create(Config("idle"));
        Assert.Throws<InvalidOperationException>(() => vm.Pause());
        Assert.Throws<InvalidOperationException>(() => vm.Resume());
        vm.Start();
        Assert.Throws<InvalidOperationException>(() => vm.Start());
        Assert.Throws<InvalidOperationException>(() => vm.Resume());
        Assert.Throws<ArgumentOutOfRangeException>(() => vm.Throttle(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => vm.Throttle(100));
        vm.Throttle(50);
        Assert.Equal(50, vm.ThrottlePercent);
        vm.Stop();
        vm.Stop();
        Assert.Equal(VmRunState.Stopped, vm.State);
        Assert.Throws<InvalidOperationException>(() => vm.Pause());
    }

    [Theory]
    [InlineData(0L, 1, "idle", "memory must be between")]
    [InlineData(1L << 20, 0, "idle", "vcpus must be between")]
    [InlineData(1L << 20, 65, "idle", "vcpus must be between")]
    [InlineData(1L << 20, 1, "memtouch:colour=red", "unknown memtouch parameter")]
    public void Invalid_configs_are_refused(long memory, int vcpus, string workload, string message)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => VirtualMachine.Create(new VmConfig { MemoryBytes = memory, Vcpus = vcpus, Workload = workload }));
        Assert.Contains(message, ex.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("slash/")]
    public void Invalid_ids_are_refused(string id)
    {
        Assert.Throws<ArgumentException>(() => new VmConfig { Id = id }.Validate());
    }
}
