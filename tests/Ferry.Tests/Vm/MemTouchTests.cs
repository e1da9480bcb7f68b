using Ferry.Core.Paging;
using Ferry.Core.Workloads;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;
using Ferry.Vm.Programs;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Vm;

public sealed class MemTouchTests
{
    private const long GuestPages = 16384;          // 64 MiB of address space, mostly never touched
    private const long WssPages = 512;              // 2 MiB working set

    [Theory]
    [InlineData("uniform", WssPages)]
    [InlineData("sequential", WssPages)]
    [InlineData("hot-cold", 100)]
    [InlineData("zipf", 100)]
    public void Writes_stay_inside_the_working_set(string pattern, long atLeast)
    {
        using var vm = VirtualMachine.Create(new VmConfig
        {
            Id = "wss",
            MemoryBytes = GuestPages * PageSize.Bytes,
            Vcpus = 2,
            Workload = $"memtouch:wss={WssPages * PageSize.Bytes},pattern={pattern},content=random,seed=3",
            OpsLimitPerVcpu = 10_000,
        });
        vm.Start();
        Assert.True(vm.WaitFinished(TimeSpan.FromSeconds(60)), "the guest did not finish");
        vm.Pause();

        long populated = vm.Memory.PopulatedCount();
        for (long p = WssPages; p < GuestPages; p++)
        {
            Assert.False(vm.Memory.IsPopulated(p), $"{pattern}: page {p} outside the {WssPages}-page working set was written");
        }
        // ... and the writes spread over it (not, say, all on one page).
        Assert.True(populated >= atLeast, $"{pattern}: only {populated} pages of the working set written");
    }

    [Fact]
    public void Sequential_pattern_cycles_through_its_slice_in_order()
    {
        var spec = WorkloadSpec.Parse("memtouch:wss=12KiB,pattern=sequential,content=random");
        var program = new MemTouchProgram(spec);
        using var memory = new GuestMemory(16 * PageSize.Bytes);
        using var log = new SoftwareDirtyLog(memory);
        var state = new VcpuState();
        program.Initialize(ref state, 0, 1, memory.PageCount);
        log.Start();
        var into = new DirtyBitmap(memory.PageCount);
        var order = new List<long>();
        for (int i = 0; i < 7; i++)
        {
            Assert.Equal(1, program.Step(ref state, memory, 1));
            log.GetAndClear(into);
            foreach (long p in into)
            {
                order.Add(p);
            }
        }
        Assert.Equal([0L, 1, 2, 0, 1, 2, 0], order);
        Assert.Equal(7UL, state.Ops);
    }

    /// <summary>Runs the program one write at a time and counts writes per page through the dirty log.</summary>
    private static long[] WritesPerPage(string workload, long pages, int writes)
    {
        var program = new MemTouchProgram(WorkloadSpec.Parse(workload));
        using var memory = new GuestMemory(pages * PageSize.Bytes);
        using var log = new SoftwareDirtyLog(memory);
        var state = new VcpuState();
        program.Initialize(ref state, 0, 1, memory.PageCount);
        log.Start();
        var into = new DirtyBitmap(pages);
        long[] counts = new long[pages];
        for (int i = 0; i < writes; i++)
        {
            program.Step(ref state, memory, 1);
            Assert.Equal(1, log.GetAndClear(into));
            foreach (long p in into)
            {
                counts[p]++;
            }
        }
        return counts;
    }

    private static double TopTenPercentShare(long[] counts)
    {
        long[] sorted = counts.OrderDescending().ToArray();
        return sorted.Take(counts.Length / 10).Sum() / (double)counts.Sum();
    }

    [Fact]
    public void Zipf_writes_concentrate_on_a_few_pages()
    {
        const long Pages = 1024;
        double zipf = TopTenPercentShare(WritesPerPage($"memtouch:wss={Pages * 4096},pattern=zipf,theta=0.99,seed=9", Pages, 40_000));
        double uniform = TopTenPercentShare(WritesPerPage($"memtouch:wss={Pages * 4096},pattern=uniform,seed=9", Pages, 40_000));
        Assert.True(zipf > 0.5, $"top 10 % of pages got {zipf:P1} of zipf writes");
        Assert.True(uniform < 0.2, $"top 10 % of pages got {uniform:P1} of uniform writes (the measurement itself is skewed)");
    }

    [Fact]
    public void Hot_cold_sends_the_configured_share_to_the_hot_set()
    {
        const long Pages = 1000;
        long[] counts = WritesPerPage($"memtouch:wss={Pages * 4096},pattern=hot-cold,hot=0.1,hotprob=0.9,seed=4", Pages, 20_000);
        double hotShare = counts.Take(100).Sum() / (double)counts.Sum();
        Assert.InRange(hotShare, 0.87, 0.93);
    }

    [Fact]
    public void Zipf_sampler_ranks_follow_the_power_law()
    {
        const int N = 1000;
        const int Samples = 200_000;
        var sampler = new ZipfSampler(N, 0.99);
        ulong rng = 12345;
        long[] counts = new long[N + 1];
        for (int i = 0; i < Samples; i++)
        {
            long k = sampler.Sample(ref rng);
            Assert.InRange(k, 1, N);
            counts[k]++;
        }
        // P(1) / P(2) = 2^θ ≈ 1.99; P(1) / P(10) = 10^θ ≈ 9.77.
        Assert.InRange(counts[1] / (double)counts[2], 1.85, 2.15);
        Assert.InRange(counts[1] / (double)counts[10], 8.5, 11.2);
        double top = counts.Skip(1).Take(N / 10).Sum() / (double)Samples;
        Assert.True(top > 0.5, $"top 10 % of ranks drew {top:P1}");

        var flatter = new ZipfSampler(N, 0.5);
        long flatTop = 0;
        for (int i = 0; i < Samples; i++)
        {
            flatTop += flatter.Sample(ref rng) <= N / 10 ? 1 : 0;
        }
        Assert.True(flatTop / (double)Samples < top, "a smaller theta must be less skewed");
        Assert.Throws<ArgumentOutOfRangeException>(() => new ZipfSampler(0, 0.99));
    }
}
