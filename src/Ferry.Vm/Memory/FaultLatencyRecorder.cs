using System.Diagnostics;

namespace Ferry.Vm.Memory;

/// <summary>
/// Post-copy fault latencies, recorded by vCPU threads without allocating: a preallocated array
/// of stopwatch ticks (samples beyond its capacity still count and update the maximum).
/// Percentiles are computed once, at the end.
/// </summary>
public sealed class FaultLatencyRecorder
{
    public const int DefaultCapacity = 1 << 20;

    private readonly long[] _ticks;
    private long _count;
    private long _maxTicks;

    public FaultLatencyRecorder(int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _ticks = new long[capacity];
    }

    /// <summary>Faults recorded so far.</summary>
    public long Count => Interlocked.Read(ref _count);

    public void Record(long ticks)
    {
        long index = Interlocked.Increment(ref _count) - 1;
        if (index < _ticks.Length)
        {
            Volatile.Write(ref _ticks[index], ticks);
        }
        long max = Interlocked.Read(ref _maxTicks);
        while (ticks > max)
        {
            long seen = Interlocked.CompareExchange(ref _maxTicks, ticks, max);
            if (seen == max)
            {
                break;
            }
            max = seen;
        }
    }

    /// <summary>p50, p99 and maximum in milliseconds (nearest-rank over the recorded samples; zeros when there were none).</summary>
    public (double P50Ms, double P99Ms, double MaxMs) Summarize()
    {
        int n = (int)Math.Min(Count, _ticks.Length);
        if (n == 0)
        {
            return (0, 0, 0);
        }
        long[] sorted = _ticks.AsSpan(0, n).ToArray();
        Array.Sort(sorted);
        return (ToMs(sorted[Rank(0.50, n)]), ToMs(sorted[Rank(0.99, n)]), ToMs(Interlocked.Read(ref _maxTicks)));
    }

    /// <summary>Every recorded sample in milliseconds, in the order recorded (at most the capacity).</summary>
    public double[] SamplesMs()
    {
        int n = (int)Math.Min(Count, _ticks.Length);
        var ms = new double[n];
        for (int i = 0; i < n; i++)
        {
            ms[i] = ToMs(Volatile.Read(ref _ticks[i]));
        }
        return ms;
    }

    private static int Rank(double q, int n) => Math.Clamp((int)Math.Ceiling(q * n) - 1, 0, n - 1);

    private static double ToMs(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}
