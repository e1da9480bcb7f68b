namespace Ferry.Core.Migration;

/// <summary>
/// How long to wait before each attempt to reach the destination again after a post-copy link
/// broke: the first retry comes quickly (most breaks are brief), later ones back off so a host
/// that is down for minutes is not hammered, and the cap keeps a returning link from idling long.
/// </summary>
public static class ReconnectBackoff
{
    public static readonly TimeSpan DefaultInitial = TimeSpan.FromMilliseconds(100);

    public static readonly TimeSpan DefaultCap = TimeSpan.FromSeconds(5);

    /// <summary>The wait after failed attempt number <paramref name="attempt"/> (0 = the first): initial × 2^attempt, at most <paramref name="cap"/>.</summary>
    public static TimeSpan Delay(int attempt, TimeSpan initial, TimeSpan cap)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(attempt);
        if (initial <= TimeSpan.Zero || cap < initial)
        {
            throw new ArgumentOutOfRangeException(nameof(initial), "backoff needs 0 < initial ≤ cap");
        }
        // Doubling past the cap (or past 2^62 ticks) gains nothing; stop before it can overflow.
        long ticks = initial.Ticks;
        for (int i = 0; i < attempt && ticks < cap.Ticks; i++)
        {
            ticks *= 2;
        }
        return TimeSpan.FromTicks(Math.Min(ticks, cap.Ticks));
    }

    public static TimeSpan Delay(int attempt) => Delay(attempt, DefaultInitial, DefaultCap);

    /// <summary>The wait before the next attempt, never past the end of the window (<paramref name="left"/>), never negative.</summary>
    public static TimeSpan DelayWithin(int attempt, TimeSpan left) =>
        left <= TimeSpan.Zero ? TimeSpan.Zero : Delay(attempt) < left ? Delay(attempt) : left;
}
