using CsCheck;
using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Tests.Support;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Kernel;

/// <summary>
/// For any write schedule — any pages, in any order, spread over several threads, in several
/// rounds, with reads mixed in — each get-and-clear reports exactly the pages written since the
/// previous one, and the kernel and software logs agree.
/// </summary>
public sealed class DirtyLogExactnessProperties
{
    private const int GuestPages = 160;
    private const int Threads = 3;

    /// <summary>One guest access: which thread does it, to which page, read or write, where in the page.</summary>
    public readonly record struct Access(int Thread, int Page, bool IsWrite, int Offset)
    {
        public override string ToString() => $"t{Thread}:{(IsWrite ? "w" : "r")}{Page}@{Offset}";
    }

    private static readonly Gen<Access> GenAccess = Gen.Select(
        Gen.Int[0, Threads - 1],
        Gen.Frequency((1, Gen.Const(0)), (1, Gen.Const(GuestPages - 1)), (8, Gen.Int[0, GuestPages - 1])),
        Gen.Bool,
        Gen.Int[0, PageSize.Bytes - 8],
        (t, p, w, o) => new Access(t, p, w, o));

    /// <summary>Rounds of accesses; a get-and-clear follows each round.</summary>
    private static readonly Gen<Access[][]> GenSchedule = GenAccess.Array[0, 40].Array[1, 4];

    [LinuxFact(HostNeeds.KernelDirtyLog)]
    public void Kernel_and_software_logs_report_exactly_the_pages_written_since_the_last_harvest()
    {
        GenSchedule.Sample(schedule =>
        {
            long[][] kernel = RunSchedule("kernel", schedule);
            long[][] software = RunSchedule("software", schedule);
            for (int round = 0; round < schedule.Length; round++)
            {
                long[] expected = schedule[round].Where(a => a.IsWrite).Select(a => (long)a.Page).Distinct().Order().ToArray();
                Assert.True(expected.SequenceEqual(kernel[round]),
                    $"round {round}: kernel log reported [{string.Join(",", kernel[round])}], writes were to [{string.Join(",", expected)}]");
                Assert.True(software[round].SequenceEqual(kernel[round]),
                    $"round {round}: software log reported [{string.Join(",", software[round])}], kernel [{string.Join(",", kernel[round])}]");
            }
        }, iter: 60, threads: 1, print: s => string.Join(" | ", s.Select(r => string.Join(" ", r))));
    }

    /// <summary>Runs the schedule on a fresh guest under one backend; returns the pages each harvest reported.</summary>
    private static long[][] RunSchedule(string backend, Access[][] schedule)
    {
        using var memory = new GuestMemory((long)GuestPages * PageSize.Bytes);
        // Pages written before tracking starts must not be reported; populated pages make reads real.
        for (int p = 0; p < GuestPages; p += 3)
        {
            memory.Write(p, 0, [0xAB]);
        }
        using IDirtyLog log = DirtyLogHarness.Create(backend, memory);
        log.Start();
        var harvest = new DirtyBitmap(memory.PageCount);
        var reported = new long[schedule.Length][];
        for (int round = 0; round < schedule.Length; round++)
        {
            Access[] accesses = schedule[round];
            var workers = new Thread[Threads];
            for (int t = 0; t < Threads; t++)
            {
                Access[] mine = accesses.Where(a => a.Thread == t).ToArray();
                workers[t] = new Thread(() => Apply(memory, mine)) { IsBackground = true };
                workers[t].Start();
            }
            foreach (Thread w in workers)
            {
                Assert.True(w.Join(TimeSpan.FromSeconds(30)), $"{backend}: round {round} worker did not finish within 30 s");
            }
            log.GetAndClear(harvest);
            reported[round] = DirtyLogHarness.Pages(harvest);
        }
        log.Stop();
        return reported;
    }

    private static void Apply(GuestMemory memory, Access[] accesses)
    {
        Span<byte> data = stackalloc byte[8];
        Span<byte> page = stackalloc byte[PageSize.Bytes];
        foreach (Access a in accesses)
        {
            if (a.IsWrite)
            {
                BitConverter.TryWriteBytes(data, ((long)a.Page << 32) | (uint)a.Offset);
                memory.Write(a.Page, a.Offset, data);
            }
            else
            {
                memory.ReadPage(a.Page, page);
                _ = memory.HashPage(a.Page);
                _ = memory.PageView(a.Page)[a.Offset];
            }
        }
    }
}
