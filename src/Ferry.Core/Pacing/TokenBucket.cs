namespace Ferry.Core.Pacing;

/// <summary>
/// Sender-side bandwidth limit. Pure arithmetic over a caller-supplied clock (seconds), so the
/// engine feeds it wall time and the simulator virtual time. The burst is small (50 ms of rate,
/// at least one frame) so the limit holds over short windows too.
/// </summary>
public sealed class TokenBucket
{
    private readonly double _rate;
    private readonly double _burst;
    private double _tokens;
    private double _last;

    /// <param name="bytesPerSecond">Rate; must be positive.</param>
    /// <param name="minimumBurst">Largest single request that must pass without being split.</param>
    /// <param name="burstSeconds">How much of the rate may go at once after a quiet spell (default 50 ms).</param>
    public TokenBucket(double bytesPerSecond, double minimumBurst, double nowSeconds, double burstSeconds = 0.05)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytesPerSecond);
        ArgumentOutOfRangeException.ThrowIfNegative(burstSeconds);
        _rate = bytesPerSecond;
        _burst = Math.Max(minimumBurst, bytesPerSecond * burstSeconds);
        _tokens = 0;
        _last = nowSeconds;
    }

    public double Rate => _rate;

    /// <summary>Takes <paramref name="bytes"/>; returns how long to wait before sending them (0 = now).</summary>
    public TimeSpan Take(double bytes, double nowSeconds)
    {
        _tokens = Math.Min(_burst, _tokens + (nowSeconds - _last) * _rate);
        _last = nowSeconds;
        _tokens -= bytes;
        return _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / _rate);
    }
}
