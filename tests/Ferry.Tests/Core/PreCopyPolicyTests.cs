using Ferry.Core.Policy;

namespace Ferry.Tests.Core;

public sealed class PreCopyPolicyTests
{
    private const long Ram = 1L << 30;               // 1 GiB guest
    private const long Page = 4096;

    /// <summary>A round of 1 s at 100 MB/s in which <paramref name="dirtied"/> pages were written.</summary>
    private static RoundObservation Round(
        int round = 1,
        long dirtied = 100_000,
        double seconds = 1,
        long wireBytes = 100_000_000,
        TimeSpan? elapsed = null,
        long? total = null) =>
        new(
            Round: round,
            PagesSent: wireBytes / Page,
            WireBytesSent: wireBytes,
            PagesDirtied: dirtied,
            Duration: TimeSpan.FromSeconds(seconds),
            Elapsed: elapsed ?? TimeSpan.FromSeconds(round * seconds),
            TotalWireBytes: total ?? round * wireBytes,
            RamBytes: Ram);

    private static PreCopyPolicy Policy(PreCopyOptions? o = null) => new(o ?? new PreCopyOptions());

    [Fact]
    public void Defaults_are_300ms_no_round_cap_30x_ram_and_one_hour()
    {
        var o = new PreCopyOptions();
        Assert.Equal(TimeSpan.FromMilliseconds(300), o.DowntimeLimit);
        Assert.Null(o.MaxRounds);
        Assert.Null(o.DirtyPageThreshold);
        Assert.Equal(30.0, o.MaxRamMultiple);
        Assert.Equal(TimeSpan.FromHours(1), o.Timeout);
        Assert.Equal("precopy", Policy().Name);
    }

    [Fact]
    public void Not_converged_continues_with_a_reason()
    {
        PolicyDecision d = Policy().Decide(Round(dirtied: 100_000));
        Assert.Equal(PolicyAction.Continue, d.Action);
        Assert.Equal("100000 pages dirtied; not converged", d.Reason);
    }

    [Fact]
    public void Downtime_limit_stops_when_remaining_bytes_fit_in_bandwidth_times_limit()
    {
        // 100 MB/s × 300 ms = 30 MB budget = 7324.2 pages.
        var policy = Policy();
        Assert.Equal(PolicyAction.StopAndCopy, policy.Decide(Round(dirtied: 7324)).Action);
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(dirtied: 7325)).Action);
        PolicyDecision d = policy.Decide(Round(dirtied: 1000));
        Assert.StartsWith("converged: ", d.Reason);
        Assert.Contains("× 300 ms", d.Reason);
    }

    [Fact]
    public void Downtime_limit_scales_with_measured_bandwidth()
    {
        var policy = Policy();
        // Same dirty count; ten times the bandwidth makes it fit.
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(dirtied: 20_000, wireBytes: 100_000_000)).Action);
        Assert.Equal(PolicyAction.StopAndCopy, policy.Decide(Round(dirtied: 20_000, wireBytes: 1_000_000_000)).Action);
    }

    [Fact]
    public void Zero_length_round_has_no_bandwidth_and_stops_only_when_nothing_is_dirty()
    {
        var policy = Policy();
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(dirtied: 1, seconds: 0)).Action);
        Assert.Equal(PolicyAction.StopAndCopy, policy.Decide(Round(dirtied: 0, seconds: 0)).Action);
    }

    [Fact]
    public void Dirty_page_threshold_stops_below_it()
    {
        var policy = Policy(new PreCopyOptions { DowntimeLimit = null, DirtyPageThreshold = 50 });
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(dirtied: 50)).Action);
        PolicyDecision d = policy.Decide(Round(dirtied: 49));
        Assert.Equal(PolicyAction.StopAndCopy, d.Action);
        Assert.Equal("dirty pages 49 < threshold 50", d.Reason);
    }

    [Fact]
    public void Round_cap_stops_at_the_cap()
    {
        var policy = Policy(new PreCopyOptions { DowntimeLimit = null, MaxRounds = 5 });
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(round: 4)).Action);
        PolicyDecision d = policy.Decide(Round(round: 5));
        Assert.Equal(PolicyAction.StopAndCopy, d.Action);
        Assert.Equal("round cap 5 reached", d.Reason);
    }

    [Fact]
    public void No_round_cap_by_default_even_after_many_rounds()
    {
        var policy = Policy();
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(round: 10_000, total: 1000, elapsed: TimeSpan.FromMinutes(1))).Action);
    }

    [Fact]
    public void Ram_multiple_stops_once_30_times_ram_was_sent()
    {
        var policy = Policy();
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(total: 30 * Ram - 1)).Action);
        PolicyDecision d = policy.Decide(Round(total: 30 * Ram));
        Assert.Equal(PolicyAction.StopAndCopy, d.Action);
        Assert.Equal("sent 30.0 GiB ≥ 30 × RAM", d.Reason);
    }

    [Fact]
    public void Timeout_aborts_after_one_hour()
    {
        var policy = Policy();
        Assert.Equal(PolicyAction.Continue, policy.Decide(Round(elapsed: TimeSpan.FromHours(1) - TimeSpan.FromTicks(1))).Action);
        PolicyDecision d = policy.Decide(Round(elapsed: TimeSpan.FromHours(1)));
        Assert.Equal(PolicyAction.Abort, d.Action);
        Assert.Equal("timeout: 60m00s elapsed ≥ limit 60m00s", d.Reason);
    }

    [Fact]
    public void Timeout_is_checked_first_so_a_late_round_aborts_even_if_it_converged()
    {
        var policy = Policy(new PreCopyOptions { MaxRounds = 1, DirtyPageThreshold = 10 });
        PolicyDecision d = policy.Decide(Round(dirtied: 0, total: 100 * Ram, elapsed: TimeSpan.FromHours(2)));
        Assert.Equal(PolicyAction.Abort, d.Action);
    }

    [Fact]
    public void When_several_conditions_hold_the_first_in_order_gives_the_reason()
    {
        // Order: timeout, downtime, dirty threshold, round cap, RAM multiple.
        var all = new PreCopyOptions { DirtyPageThreshold = 10, MaxRounds = 1 };
        Assert.StartsWith("converged", Policy(all).Decide(Round(dirtied: 0, total: 100 * Ram)).Reason);
        Assert.StartsWith("dirty pages", Policy(all with { DowntimeLimit = null }).Decide(Round(dirtied: 0, total: 100 * Ram)).Reason);
        Assert.StartsWith("round cap", Policy(all with { DowntimeLimit = null, DirtyPageThreshold = null }).Decide(Round(dirtied: 0, total: 100 * Ram)).Reason);
        Assert.StartsWith("sent", Policy(all with { DowntimeLimit = null, DirtyPageThreshold = null, MaxRounds = null }).Decide(Round(dirtied: 0, total: 100 * Ram)).Reason);
        Assert.Equal(PolicyAction.Continue,
            Policy(new PreCopyOptions { DowntimeLimit = null, MaxRamMultiple = null, Timeout = null }).Decide(Round(dirtied: 0, total: 100 * Ram, elapsed: TimeSpan.FromDays(1))).Action);
    }

    [Fact]
    public void Every_condition_can_be_disabled()
    {
        var none = new PreCopyOptions { DowntimeLimit = null, MaxRamMultiple = null, Timeout = null };
        PolicyDecision d = Policy(none).Decide(Round(round: 1_000_000, dirtied: 0, seconds: 0, total: long.MaxValue / 2, elapsed: TimeSpan.FromDays(365)));
        Assert.Equal(PolicyAction.Continue, d.Action);
    }

    [Theory]
    [InlineData("DowntimeLimit")]
    [InlineData("MaxRounds")]
    [InlineData("DirtyPageThreshold")]
    [InlineData("MaxRamMultiple")]
    [InlineData("Timeout")]
    public void Invalid_options_are_refused_when_the_policy_is_built(string which)
    {
        PreCopyOptions bad = which switch
        {
            "DowntimeLimit" => new() { DowntimeLimit = TimeSpan.FromMilliseconds(-1) },
            "MaxRounds" => new() { MaxRounds = 0 },
            "DirtyPageThreshold" => new() { DirtyPageThreshold = -1 },
            "MaxRamMultiple" => new() { MaxRamMultiple = 0 },
            _ => new() { Timeout = TimeSpan.Zero },
        };
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new PreCopyPolicy(bad));
        Assert.Equal(which, ex.ParamName);
    }

    [Fact]
    public void Observation_derives_bandwidth_dirty_rate_and_remaining_bytes()
    {
        RoundObservation o = Round(dirtied: 500, seconds: 2, wireBytes: 10_000_000);
        Assert.Equal(5_000_000, o.BandwidthBytesPerSecond);
        Assert.Equal(250, o.DirtyPagesPerSecond);
        Assert.Equal(500 * 4096, o.RemainingBytes);
        RoundObservation instant = Round(seconds: 0);
        Assert.Equal(0, instant.BandwidthBytesPerSecond);
        Assert.Equal(0, instant.DirtyPagesPerSecond);
    }

    [Fact]
    public void Geometric_series_converges_when_the_dirty_rate_is_below_the_bandwidth()
    {
        // A simulated run: each round lasts as long as sending the previous round's dirty pages,
        // during which pages are dirtied at a fixed rate. With dirty rate < link rate the series
        // shrinks and the downtime limit ends it; the decision core needs no clock to say so.
        var policy = Policy();
        double bandwidth = 100e6, dirtyPerSecond = 10_000;     // ~41 MB/s of dirtying
        long toSend = Ram / Page, total = 0;
        double elapsed = 0;
        for (int round = 1; round <= 50; round++)
        {
            double seconds = toSend * Page / bandwidth;
            long dirtied = (long)(dirtyPerSecond * seconds);
            elapsed += seconds;
            total += toSend * Page;
            PolicyDecision d = policy.Decide(new RoundObservation(round, toSend, toSend * Page, dirtied,
                TimeSpan.FromSeconds(seconds), TimeSpan.FromSeconds(elapsed), total, Ram));
            if (d.Action == PolicyAction.StopAndCopy)
            {
                Assert.True(round is > 1 and < 10, $"stopped in round {round}");
                Assert.StartsWith("converged", d.Reason);
                return;
            }
            Assert.Equal(PolicyAction.Continue, d.Action);
            toSend = dirtied;
        }
        Assert.Fail("pre-copy never converged");
    }
}
