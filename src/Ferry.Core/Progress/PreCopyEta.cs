using Ferry.Core.Policy;

namespace Ferry.Core.Progress;

/// <summary>
/// Remaining-time estimate for a pre-copy in flight, from the geometric series of the paper:
/// each round re-sends what the previous one let the guest dirty, a share q of it, until what is
/// left fits the downtime budget (bandwidth × downtime limit). When q ≥ 1 the series does not
/// converge and the byte cap, round cap or timeout ends the migration instead.
/// </summary>
public static class PreCopyEta
{
    private const int MaxRoundsProjected = 10_000;

    /// <param name="options">The policy's stop conditions.</param>
    /// <param name="round">Current round number (1-based).</param>
    /// <param name="roundPages">Pages the current round has to send.</param>
    /// <param name="pagesLeftInRound">Pages of the current round not yet sent.</param>
    /// <param name="sendPagesPerSecond">Measured send rate.</param>
    /// <param name="shrink">Pages dirtied per page sent in the last round (q); before the first harvest, dirty rate ÷ send rate.</param>
    /// <param name="wireBytesSoFar">Bytes sent since the start.</param>
    /// <param name="ramBytes">Guest RAM size.</param>
    /// <param name="elapsedSeconds">Time since the start.</param>
    /// <returns>Seconds, or null when no estimate can be made yet.</returns>
    public static double? Estimate(PreCopyOptions options, int round, long roundPages, long pagesLeftInRound, double sendPagesPerSecond,
        double shrink, long wireBytesSoFar, long ramBytes, double elapsedSeconds)
    {
        if (sendPagesPerSecond <= 0 || double.IsNaN(shrink))
        {
            return null;
        }
        double bytesPerSecond = sendPagesPerSecond * Paging.PageSize.Bytes;
        double budgetPages = options.DowntimeLimit is { } limit ? bytesPerSecond * limit.TotalSeconds / Paging.PageSize.Bytes : 0;
        budgetPages = Math.Max(budgetPages, options.DirtyPageThreshold ?? 0);
        double pages = pagesLeftInRound;
        double next = roundPages * shrink;
        int rounds = round;
        int cap = options.MaxRounds ?? int.MaxValue;
        bool converges = shrink < 0.999;
        if (converges)
        {
            for (int i = 0; i < MaxRoundsProjected && next > budgetPages && rounds < cap; i++)
            {
                pages += next;
                next *= shrink;
                rounds++;
            }
        }
        double? bound = null;
        if (options.MaxRamMultiple is { } k)
        {
            bound = Math.Max(0, k * ramBytes - wireBytesSoFar) / bytesPerSecond + next / sendPagesPerSecond;
        }
        if (options.Timeout is { } timeout)
        {
            double t = Math.Max(0, timeout.TotalSeconds - elapsedSeconds);
            bound = bound is { } b ? Math.Min(b, t) : t;
        }
        if (!converges && options.MaxRounds is null)
        {
            return bound;
        }
        double series = (pages + next) / sendPagesPerSecond;
        return bound is { } c ? Math.Min(series, c) : series;
    }
}
