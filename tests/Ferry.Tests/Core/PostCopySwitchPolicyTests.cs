using Ferry.Core.Migration;
using Ferry.Core.Policy;

namespace Ferry.Tests.Core;

/// <summary>When hybrid and auto leave pre-copy for post-copy (pure decisions, no engine).</summary>
public sealed class PostCopySwitchPolicyTests
{
    private const long Ram = 1L << 30;
    private const long Page = 4096;

    /// <summary>A 1 s round at 100 MB/s in which <paramref name="dirtied"/> pages were written (24,414 pages/s ≈ the bandwidth).</summary>
    private static RoundObservation Round(int round = 1, long dirtied = 10_000, double seconds = 1, long wireBytes = 100_000_000, TimeSpan? elapsed = null) =>
        new(round, wireBytes / Page, wireBytes, dirtied, TimeSpan.FromSeconds(seconds), elapsed ?? TimeSpan.FromSeconds(round * seconds), round * wireBytes, Ram);

    [Fact]
    public void Hybrid_switches_after_its_rounds_and_not_before()
    {
        var p = new HybridPolicy(3);
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(1)).Action);
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(2)).Action);
        PolicyDecision d = p.Decide(Round(3));
        Assert.Equal(PolicyAction.SwitchToPostCopy, d.Action);
        Assert.Contains("3 pre-copy rounds", d.Reason);
    }

    [Fact]
    public void Hybrid_default_is_one_round_and_even_a_converged_round_switches()
    {
        var options = new MigrationOptions { Technique = MigrationTechnique.Hybrid };
        Assert.Equal(1, options.HybridRounds);
        IMigrationPolicy p = options.CreatePolicy();
        Assert.Equal("hybrid", p.Name);
        Assert.Equal(PolicyAction.SwitchToPostCopy, p.Decide(Round(1, dirtied: 0)).Action);
    }

    [Fact]
    public void Hybrid_timeout_aborts_because_the_source_is_still_untouched()
    {
        var p = new HybridPolicy(5, TimeSpan.FromSeconds(10));
        Assert.Equal(PolicyAction.Abort, p.Decide(Round(2, elapsed: TimeSpan.FromSeconds(10))).Action);
    }

    [Fact]
    public void Hybrid_needs_a_round()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new HybridPolicy(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MigrationOptions { HybridRounds = 0 }.Validate());
    }

    [Fact]
    public void Auto_stops_and_copies_when_converged()
    {
        var p = new AutoPolicy(new PreCopyOptions());
        // 1,000 pages = 4 MB ≤ 100 MB/s × 300 ms.
        Assert.Equal(PolicyAction.StopAndCopy, p.Decide(Round(1, dirtied: 1_000)).Action);
    }

    [Fact]
    public void Auto_continues_while_remaining_bytes_shrink()
    {
        var p = new AutoPolicy(new PreCopyOptions());
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(1, dirtied: 20_000)).Action);
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(2, dirtied: 15_000)).Action);
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(3, dirtied: 10_000)).Action);
    }

    [Fact]
    public void Auto_switches_when_the_dirty_rate_reaches_the_bandwidth()
    {
        var p = new AutoPolicy(new PreCopyOptions());
        // 24,415 pages × 4096 B in 1 s = 100.004 MB/s ≥ 100 MB/s.
        PolicyDecision d = p.Decide(Round(1, dirtied: 24_415));
        Assert.Equal(PolicyAction.SwitchToPostCopy, d.Action);
        Assert.Contains("dirty rate", d.Reason);
    }

    [Fact]
    public void Auto_switches_when_remaining_bytes_stop_shrinking_for_k_rounds()
    {
        var p = new AutoPolicy(new PreCopyOptions(), stallRounds: 2);
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(1, dirtied: 10_000)).Action);
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(2, dirtied: 10_000)).Action);   // stalled once
        PolicyDecision d = p.Decide(Round(3, dirtied: 10_500));                             // twice
        Assert.Equal(PolicyAction.SwitchToPostCopy, d.Action);
        Assert.Contains("did not shrink for 2 rounds", d.Reason);
    }

    [Fact]
    public void Auto_does_not_count_noise_as_shrinking()
    {
        var p = new AutoPolicy(new PreCopyOptions(), stallRounds: 2);
        p.Decide(Round(1, dirtied: 10_000));
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(2, dirtied: 9_700)).Action);          // 3 % less: still stalled
        Assert.Equal(PolicyAction.SwitchToPostCopy, p.Decide(Round(3, dirtied: 9_500)).Action);  // 2 % less: stalled twice
    }

    [Fact]
    public void Auto_stall_count_resets_when_a_round_shrinks()
    {
        var p = new AutoPolicy(new PreCopyOptions(), stallRounds: 2);
        p.Decide(Round(1, dirtied: 10_000));
        p.Decide(Round(2, dirtied: 10_000));                                                   // stalled once
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(3, dirtied: 9_000)).Action);        // shrank: reset
        Assert.Equal(PolicyAction.Continue, p.Decide(Round(4, dirtied: 9_000)).Action);        // stalled once again
    }

    [Fact]
    public void Auto_switches_instead_of_aborting_when_the_time_budget_is_spent()
    {
        var p = new AutoPolicy(new PreCopyOptions { Timeout = TimeSpan.FromSeconds(5) });
        PolicyDecision d = p.Decide(Round(1, dirtied: 10_000, elapsed: TimeSpan.FromSeconds(5)));
        Assert.Equal(PolicyAction.SwitchToPostCopy, d.Action);
        Assert.Contains("time budget", d.Reason);
    }

    [Fact]
    public void Auto_treats_round_cap_and_ram_multiple_as_not_converging()
    {
        Assert.Equal(PolicyAction.SwitchToPostCopy,
            new AutoPolicy(new PreCopyOptions { MaxRounds = 1 }).Decide(Round(1, dirtied: 10_000)).Action);
        Assert.Equal(PolicyAction.SwitchToPostCopy,
            new AutoPolicy(new PreCopyOptions { MaxRamMultiple = 0.05 }).Decide(Round(1, dirtied: 10_000)).Action);
    }

    [Fact]
    public void Auto_dirty_threshold_means_converged()
    {
        var p = new AutoPolicy(new PreCopyOptions { DowntimeLimit = null, DirtyPageThreshold = 50_000 });
        Assert.Equal(PolicyAction.StopAndCopy, p.Decide(Round(1, dirtied: 10_000)).Action);
    }

    [Fact]
    public void Precopy_policy_never_switches_to_post_copy()
    {
        IMigrationPolicy p = new MigrationOptions { Technique = MigrationTechnique.PreCopy, PreCopy = new PreCopyOptions { MaxRounds = 2 } }.CreatePolicy();
        Assert.Equal("precopy", p.Name);
        for (int r = 1; r <= 3; r++)
        {
            Assert.NotEqual(PolicyAction.SwitchToPostCopy, p.Decide(Round(r, dirtied: 24_415)).Action);
        }
    }

    [Theory]
    [InlineData("postcopy", MigrationTechnique.PostCopy)]
    [InlineData("post-copy", MigrationTechnique.PostCopy)]
    [InlineData("hybrid", MigrationTechnique.Hybrid)]
    [InlineData(" Auto ", MigrationTechnique.Auto)]
    public void New_technique_names_parse_and_round_trip(string text, MigrationTechnique expected)
    {
        Assert.True(MigrationTechniqueNames.TryParse(text, out var t));
        Assert.Equal(expected, t);
        Assert.True(MigrationTechniqueNames.TryParse(t.ToWire(), out var again));
        Assert.Equal(t, again);
        Assert.True(t.MayUsePostCopy());
    }
}
