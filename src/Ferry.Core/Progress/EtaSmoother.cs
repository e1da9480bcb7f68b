namespace Ferry.Core.Progress;

/// <summary>
/// Steadies the shown ETA without hiding news: between estimates it counts down with time and
/// eases toward the fresh estimate (time constant <see cref="TimeConstantSeconds"/>), so rate
/// jitter does not make it flicker; an estimate that differs by more than
/// <see cref="SnapShare"/> (plus <see cref="SnapSeconds"/>) is shown at once, up or down, and so is
/// any change of <see cref="EtaKind"/>. It never holds a value the estimate has left behind
/// (the countdown that did showed "4.3 s" for 115 s of a migration that did not converge).
/// </summary>
public sealed class EtaSmoother
{
    public const double TimeConstantSeconds = 1.0;
    public const double SnapShare = 0.25;
    public const double SnapSeconds = 0.5;

    private double? _shown;
    private double _at;
    private EtaKind _kind;

    /// <param name="nowSeconds">Monotonic time of this update (passed in: no clock is read).</param>
    /// <param name="kind">What the estimate is.</param>
    /// <param name="rawSeconds">The fresh estimate (null: none).</param>
    /// <returns>The seconds to show (null when there is no estimate).</returns>
    public double? Update(double nowSeconds, EtaKind kind, double? rawSeconds)
    {
        if (rawSeconds is not { } raw || !double.IsFinite(raw))
        {
            _shown = null;
            _kind = kind;
            return null;
        }
        raw = Math.Max(0, raw);
        if (_shown is not { } shown || kind != _kind)
        {
            _shown = raw;
        }
        else
        {
            double dt = Math.Max(0, nowSeconds - _at);
            double counted = Math.Max(0, shown - dt);
            double gap = raw - counted;
            _shown = Math.Abs(gap) > SnapShare * Math.Max(raw, counted) + SnapSeconds
                ? raw
                : counted + gap * -double.ExpM1(-dt / TimeConstantSeconds);
        }
        _at = nowSeconds;
        _kind = kind;
        return _shown;
    }
}
