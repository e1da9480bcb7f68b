namespace Ferry.Core.Progress;

/// <summary>
/// Turns raw remaining-time estimates into an ETA that never runs backwards: a countdown that
/// may fall faster than time passes (when the estimate improves) but never rises. When the raw
/// estimate grows, the countdown holds instead of jumping up, and resumes once reality catches up.
/// </summary>
public sealed class MonotonicEta
{
    private double? _shown;
    private double _lastAt;

    /// <param name="nowSeconds">Monotonic time of this update.</param>
    /// <param name="rawEstimateSeconds">Fresh estimate, or null when unknown.</param>
    public double? Update(double nowSeconds, double? rawEstimateSeconds)
    {
        if (rawEstimateSeconds is not { } raw || double.IsNaN(raw) || double.IsInfinity(raw))
        {
            return _shown;
        }
        raw = Math.Max(0, raw);
        if (_shown is not { } shown)
        {
            _shown = raw;
        }
        else
        {
            double counted = Math.Max(0, shown - (nowSeconds - _lastAt));
            // Hold (do not count down) while the estimate says we are behind.
            _shown = raw < counted ? raw : Math.Min(shown, Math.Max(counted, raw));
        }
        _lastAt = nowSeconds;
        return _shown;
    }
}
