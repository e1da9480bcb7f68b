using Ferry.Core.Pacing;

namespace Ferry.Core.Machines.Source;

/// <summary>
/// The source's bandwidth limit: a token bucket over the machine's clock. Started just before the
/// first page goes out, so waiting for the destination earns no credit to burst past the limit.
/// Post-copy without a limit may install one later, just below what the link delivers.
/// </summary>
internal sealed class SourcePacer
{
    private TokenBucket? _bucket;

    public bool IsLimited => _bucket is not null;

    public void Start(long bytesPerSecond, int minimumBurst, TimeSpan now)
    {
        if (bytesPerSecond > 0)
        {
            _bucket = new TokenBucket(bytesPerSecond, minimumBurst, now.TotalSeconds);
        }
    }

    /// <summary>Automatic post-copy pacing: a small burst (2 ms of rate) so the queues between the hosts stay short.</summary>
    public void PaceAt(double bytesPerSecond, int minimumBurst, TimeSpan now) =>
        _bucket = new TokenBucket(bytesPerSecond, minimumBurst, now.TotalSeconds, burstSeconds: 0.002);

    /// <summary>Takes <paramref name="bytes"/>; how long to wait before sending them.</summary>
    public TimeSpan Take(int bytes, TimeSpan now) => _bucket?.Take(bytes, now.TotalSeconds) ?? TimeSpan.Zero;

    /// <summary>How long until what was already taken is paid for (zero when it is).</summary>
    public TimeSpan Owed(TimeSpan now) => _bucket?.Take(0, now.TotalSeconds) ?? TimeSpan.Zero;
}
