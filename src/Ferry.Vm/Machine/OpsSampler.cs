using System.Diagnostics;

namespace Ferry.Vm.Machine;

/// <summary>
/// Samples a VM's operation counter every 100 ms into a ring (about a minute of history), so
/// throughput over any recent window (e.g. the 3 s before a migration) can be read back.
/// </summary>
internal sealed class OpsSampler : IDisposable
{
    private const int Capacity = 1024;
    private readonly Func<long> _read;
    private readonly (long Timestamp, long Ops)[] _ring = new (long, long)[Capacity];
    private readonly Timer _timer;
    private readonly Lock _lock = new();
    private int _next;
    private int _count;

    public OpsSampler(Func<long> read)
    {
        _read = read;
        Sample();
        _timer = new Timer(_ => Sample(), null, 100, 100);
    }

    public void Sample()
    {
        long ops = _read();
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            _ring[_next] = (now, ops);
            _next = (_next + 1) % Capacity;
            _count = Math.Min(_count + 1, Capacity);
        }
    }

    /// <summary>Operations per second over the samples in [now − window, now], and the span actually covered.</summary>
    public (double OpsPerSecond, TimeSpan Covered) RateOver(TimeSpan window)
    {
        long nowOps = _read();
        long now = Stopwatch.GetTimestamp();
        long from = now - (long)(window.TotalSeconds * Stopwatch.Frequency);
        lock (_lock)
        {
            (long Timestamp, long Ops)? oldest = null;
            for (int i = 0; i < _count; i++)
            {
                var s = _ring[(_next - 1 - i + Capacity) % Capacity];
                if (s.Timestamp < from)
                {
                    break;
                }
                oldest = s;
            }
            if (oldest is not { } o || now <= o.Timestamp)
            {
                return (0, TimeSpan.Zero);
            }
            double seconds = (now - o.Timestamp) / (double)Stopwatch.Frequency;
            return ((nowOps - o.Ops) / seconds, TimeSpan.FromSeconds(seconds));
        }
    }

    public void Dispose() => _timer.Dispose();
}
