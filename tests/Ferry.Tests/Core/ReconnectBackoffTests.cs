using Ferry.Core.Migration;

namespace Ferry.Tests.Core;

/// <summary>The gaps between attempts to reach the destination again after a post-copy link broke.</summary>
public sealed class ReconnectBackoffTests
{
    [Fact]
    public void Gaps_start_at_100_ms_double_and_stop_growing_at_5_s()
    {
        double[] ms = Enumerable.Range(0, 9).Select(a => ReconnectBackoff.Delay(a).TotalMilliseconds).ToArray();
        Assert.Equal([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000], ms);
    }

    [Fact]
    public void A_very_late_attempt_stays_at_the_cap()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), ReconnectBackoff.Delay(int.MaxValue));
        Assert.Equal(TimeSpan.FromSeconds(2), ReconnectBackoff.Delay(40, TimeSpan.FromMilliseconds(3), TimeSpan.FromSeconds(2)));
    }

    [Fact]
    public void A_gap_never_reaches_past_the_end_of_the_window()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(250), ReconnectBackoff.DelayWithin(5, TimeSpan.FromMilliseconds(250)));
        Assert.Equal(TimeSpan.FromMilliseconds(400), ReconnectBackoff.DelayWithin(2, TimeSpan.FromSeconds(10)));
        Assert.Equal(TimeSpan.Zero, ReconnectBackoff.DelayWithin(0, TimeSpan.FromSeconds(-1)));
    }

    [Fact]
    public void Nonsense_settings_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ReconnectBackoff.Delay(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ReconnectBackoff.Delay(0, TimeSpan.Zero, TimeSpan.FromSeconds(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ReconnectBackoff.Delay(0, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1)));
    }

    [Fact]
    public void A_pause_limit_shorter_than_the_automatic_window_is_refused()
    {
        var o = new MigrationOptions { PostCopyRecoveryTimeout = TimeSpan.FromSeconds(30), PostCopyPauseLimit = TimeSpan.FromSeconds(5) };
        var ex = Assert.Throws<ArgumentOutOfRangeException>(o.Validate);
        Assert.Contains("pause limit", ex.Message);
        (o with { PostCopyPauseLimit = TimeSpan.FromSeconds(30) }).Validate();
    }
}
