using Ferry.Core.Pacing;

namespace Ferry.Tests.Core;

public sealed class PostCopyAutoPacingTests
{
    // A hair longer than a window, so float rounding of the running clock never leaves one short.
    private const double Window = PostCopyAutoPacing.WindowSeconds * 1.001;

    /// <summary>Feeds one reading per window of a link whose rate follows <paramref name="rateAt"/>; returns the clock at the end.</summary>
    private static double Feed(PostCopyAutoPacing pacing, Func<int, double> rateAt, int windows, ref ulong acked, double start = 0)
    {
        double now = start;
        pacing.Observe(new LinkDelivery(acked), now);
        for (int i = 0; i < windows; i++)
        {
            now += Window;
            acked += (ulong)(rateAt(i) * Window);
            pacing.Observe(new LinkDelivery(acked), now);
        }
        return now;
    }

    [Fact]
    public void Stays_unpaced_while_the_link_ramps_up_then_paces_below_the_plateau()
    {
        var pacing = new PostCopyAutoPacing();
        ulong acked = 0;
        // Slow start: doubling each window up to 100 MB/s.
        Feed(pacing, i => Math.Min(100e6, 5e6 * Math.Pow(2, i)), 5, ref acked);
        Assert.False(pacing.Settled);
        Assert.Null(pacing.PacingBytesPerSecond);
        Feed(pacing, _ => 100e6, PostCopyAutoPacing.PlateauWindows + 1, ref acked, start: 1);
        Assert.True(pacing.Settled);
        Assert.Equal(100e6 * PostCopyAutoPacing.Fraction, pacing.PacingBytesPerSecond!.Value, 0.01 * 100e6);
    }

    [Fact]
    public void Paced_windows_do_not_drag_the_estimate_down_but_a_faster_link_raises_it()
    {
        var pacing = new PostCopyAutoPacing();
        ulong acked = 0;
        double now = Feed(pacing, _ => 100e6, 6, ref acked);
        double paced = pacing.PacingBytesPerSecond!.Value;
        now = Feed(pacing, _ => paced, 20, ref acked, now);
        Assert.Equal(paced, pacing.PacingBytesPerSecond!.Value);
        Feed(pacing, _ => 200e6, 2, ref acked, now);
        Assert.True(pacing.PacingBytesPerSecond > paced * 1.5, $"{pacing.PacingBytesPerSecond} after a 200 MB/s window");
    }

    [Fact]
    public void Readings_closer_than_a_window_a_stalled_link_and_a_new_connection_do_not_count()
    {
        var pacing = new PostCopyAutoPacing();
        Assert.False(pacing.Observe(new LinkDelivery(0), 0));
        Assert.False(pacing.Observe(new LinkDelivery(100), Window / 2));            // too soon: no rate yet
        Assert.Equal(0, pacing.LinkBytesPerSecond);
        ulong acked = 100;
        double now = Feed(pacing, _ => 1e3, 10, ref acked, start: Window);          // below the minimum: a stalled link
        Assert.Equal(0, pacing.LinkBytesPerSecond);
        Assert.False(pacing.Settled);
        now = Feed(pacing, _ => 50e6, 1, ref acked, now);                           // one real window: an estimate, not yet settled
        Assert.Equal(50e6, pacing.LinkBytesPerSecond, 1e5);
        Assert.False(pacing.Observe(new LinkDelivery(5), now + Window));            // a new connection's counter starts again: no rate from it
        Assert.Equal(50e6, pacing.LinkBytesPerSecond, 1e5);
        Assert.False(pacing.Settled);
    }
}
