namespace Ferry.Core.Pacing;

/// <summary>
/// Paces a post-copy push that has no bandwidth limit just below what the link delivers. Pushing
/// faster than the link only fills the queues between the two hosts, and a page answer waits
/// behind whatever sits there (bench/README.md measured 3.2 ms at the median on a 1 Gbit/s shaped
/// link, 0.11 ms when paced below it).
/// The link's rate is measured as acknowledged bytes over windows of <see cref="WindowSeconds"/>
/// while the push runs unpaced. Once the best window has not grown by <see cref="Growth"/> for
/// <see cref="PlateauWindows"/> windows (TCP has finished ramping up), pacing starts at
/// <see cref="Fraction"/> of it. Paced windows measure the pacing, not the link, so the estimate
/// then holds; only a faster window raises it.
/// Pure arithmetic over a caller-supplied clock, like <see cref="TokenBucket"/>.
/// </summary>
public sealed class PostCopyAutoPacing
{
    /// <summary>The share of the measured link rate the push is paced at.</summary>
    public const double Fraction = 0.9;

    /// <summary>A new best window counts as growth only above this factor of the old one.</summary>
    public const double Growth = 1.1;

    /// <summary>Length of one measuring window: long enough to average over many acknowledgements and a token-bucket burst.</summary>
    public const double WindowSeconds = 0.02;

    /// <summary>Windows in a row without growth before pacing starts.</summary>
    public const int PlateauWindows = 3;

    /// <summary>Rates below this are not a link worth pacing for (a stalled or idle connection).</summary>
    public const double MinimumBytesPerSecond = 1 << 20;

    private double _windowStart = double.NaN;
    private ulong _windowStartAcked;
    private int _windowsWithoutGrowth;

    /// <summary>The best window's rate so far, or 0.</summary>
    public double LinkBytesPerSecond { get; private set; }

    /// <summary>True once the estimate has settled and the push is paced.</summary>
    public bool Settled { get; private set; }

    /// <summary>The pacing rate, or null while the estimate is still settling.</summary>
    public double? PacingBytesPerSecond => Settled ? LinkBytesPerSecond * Fraction : null;

    /// <summary>Takes a reading at <paramref name="nowSeconds"/>; returns true when <see cref="PacingBytesPerSecond"/> changed.</summary>
    public bool Observe(LinkDelivery reading, double nowSeconds)
    {
        if (double.IsNaN(_windowStart) || reading.BytesAcked < _windowStartAcked)
        {
            // First reading, or a new connection after a recovery: its counter starts again.
            _windowStart = nowSeconds;
            _windowStartAcked = reading.BytesAcked;
            return false;
        }
        double span = nowSeconds - _windowStart;
        if (span < WindowSeconds)
        {
            return false;
        }
        double rate = (reading.BytesAcked - _windowStartAcked) / span;
        _windowStart = nowSeconds;
        _windowStartAcked = reading.BytesAcked;
        if (rate < MinimumBytesPerSecond)
        {
            return false;
        }
        if (rate > LinkBytesPerSecond * Growth)
        {
            LinkBytesPerSecond = rate;
            _windowsWithoutGrowth = 0;
            return Settled;
        }
        if (rate > LinkBytesPerSecond)
        {
            LinkBytesPerSecond = rate;
        }
        if (!Settled && ++_windowsWithoutGrowth >= PlateauWindows)
        {
            Settled = true;
            return true;
        }
        return false;
    }
}
