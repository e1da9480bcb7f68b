using System.Diagnostics;
using System.Globalization;
using Ferry.Core.Paging;
using Ferry.Core.Tracking;
using Ferry.Vm.Memory;

namespace Ferry.Bench.Tracking;

/// <summary>
/// Get-and-clear time by guest size and dirty fraction, per backend. Guest RAM is populated
/// first (a running guest's RAM is), then each repeat dirties a fresh random set of pages
/// (8-byte guest writes through GuestMemory.Write, as a guest does) and times one GetAndClear.
/// The write time per page is reported too: under the kernel log it is the first-write fault a
/// guest pays per page per round; under the software log it is the bitmap mark.
/// </summary>
internal static class HarvestBenchmark
{
    public static readonly double[] DirtyFractions = [0, 0.01, 0.10, 1.0];

    public static void Run(IReadOnlyList<long> sizes, int repeats, TextWriter output)
    {
        output.WriteLine("| guest | dirty | backend | pages reported | get-and-clear ms (median) | min–max ms | guest write µs/page (median) |");
        output.WriteLine("|---|---|---|---|---|---|---|");
        foreach (long size in sizes)
        {
            foreach (string backend in Backends.Names)
            {
                RunOne(size, backend, repeats, output);
            }
        }
    }

    private static void RunOne(long size, string backend, int repeats, TextWriter output)
    {
        using var memory = new GuestMemory(size);
        long populateStart = Stopwatch.GetTimestamp();
        for (long p = 0; p < memory.PageCount; p++)
        {
            memory.Write(p, 0, [1]);
        }
        Console.Error.WriteLine($"populated {Size(size)} in {Stopwatch.GetElapsedTime(populateStart).TotalSeconds:0.0} s");
        using IDirtyLog log = Backends.Create(backend, memory);
        log.Start();
        var dirty = new DirtyBitmap(memory.PageCount);
        log.GetAndClear(dirty); // warm-up: first call pays one-time costs (JIT of the scan path, scanner buffer)
        var rng = new Random(0x5EED ^ (int)(size >> 20));
        byte[] data = new byte[8];
        long[] order = new long[memory.PageCount];
        for (long p = 0; p < order.Length; p++)
        {
            order[p] = p;
        }
        foreach (double fraction in DirtyFractions)
        {
            long count = (long)Math.Round(memory.PageCount * fraction);
            var scanMs = new List<double>();
            var writeUs = new List<double>();
            long reported = 0;
            for (int r = 0; r < repeats; r++)
            {
                long[] pages = Choose(order, count, rng);
                long t0 = Stopwatch.GetTimestamp();
                foreach (long p in pages)
                {
                    rng.NextBytes(data);
                    memory.Write(p, rng.Next(PageSize.Bytes - 8 + 1), data);
                }
                if (count > 0)
                {
                    writeUs.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds / count);
                }
                t0 = Stopwatch.GetTimestamp();
                reported = log.GetAndClear(dirty);
                scanMs.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                if (reported != count)
                {
                    throw new InvalidOperationException($"{backend} reported {reported} pages, {count} were written");
                }
            }
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {Size(size)} | {fraction * 100:0} % | {backend} | {reported:N0} | {Median.Of(scanMs):0.000} | {scanMs.Min():0.000}–{scanMs.Max():0.000} | {(writeUs.Count == 0 ? "–" : Median.Of(writeUs).ToString("0.000", CultureInfo.InvariantCulture))} |"));
            output.Flush();
        }
        log.Stop();
    }

    /// <summary>A random set of <paramref name="count"/> distinct pages, in random order (partial Fisher–Yates).</summary>
    private static long[] Choose(long[] order, long count, Random rng)
    {
        if (count == order.Length)
        {
            return order;
        }
        for (long i = 0; i < count; i++)
        {
            long j = i + rng.NextInt64(order.Length - i);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order[..(int)count];
    }

    public static string Size(long bytes) => bytes >= 1L << 30 ? $"{bytes >> 30} GiB" : $"{bytes >> 20} MiB";
}
