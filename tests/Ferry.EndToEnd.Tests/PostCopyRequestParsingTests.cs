using Ferry.Agent.Api;
using Ferry.Agent.Migrations;
using Ferry.Core.Migration;

namespace Ferry.EndToEnd.Tests;

/// <summary>The agent API accepts the post-copy techniques and the hybrid round count.</summary>
public sealed class PostCopyRequestParsingTests
{
    [Theory]
    [InlineData("postcopy", MigrationTechnique.PostCopy)]
    [InlineData("hybrid", MigrationTechnique.Hybrid)]
    [InlineData("auto", MigrationTechnique.Auto)]
    public void Post_copy_techniques_are_accepted(string name, MigrationTechnique expected)
    {
        MigrationOptions o = MigrationRequestParser.Parse(new StartMigrationRequest { VmId = "v", Target = "http://x", Technique = name });
        Assert.Equal(expected, o.Technique);
        Assert.Equal(1, o.HybridRounds);
    }

    [Fact]
    public void Hybrid_rounds_are_taken_and_checked()
    {
        Assert.Equal(3, MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "hybrid", HybridRounds = 3 }).HybridRounds);
        var ex = Assert.Throws<ArgumentException>(() => MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "hybrid", HybridRounds = 0 }));
        Assert.Contains("at least one pre-copy round", ex.Message);
    }

    [Fact]
    public void An_unknown_technique_lists_every_name()
    {
        var ex = Assert.Throws<ArgumentException>(() => MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "teleport" }));
        Assert.Contains("postcopy, hybrid, auto", ex.Message);
    }

    [Fact]
    public void Post_copy_pause_settings_default_generously_and_a_short_pause_limit_shortens_the_retry_window()
    {
        MigrationOptions d = MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "postcopy" });
        Assert.Equal(TimeSpan.FromSeconds(30), d.PostCopyRecoveryTimeout);
        Assert.Equal(TimeSpan.FromMinutes(10), d.PostCopyPauseLimit);

        MigrationOptions shortLimit = MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "postcopy", PostCopyPauseLimit = "5s" });
        Assert.Equal(TimeSpan.FromSeconds(5), shortLimit.PostCopyPauseLimit);
        Assert.Equal(TimeSpan.FromSeconds(5), shortLimit.PostCopyRecoveryTimeout);

        MigrationOptions both = MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "postcopy", PostCopyRetryWindow = "2s", PostCopyPauseLimit = "1m" });
        Assert.Equal(TimeSpan.FromSeconds(2), both.PostCopyRecoveryTimeout);
        Assert.Equal(TimeSpan.FromMinutes(1), both.PostCopyPauseLimit);
    }

    [Theory]
    [InlineData("soon", null, "post-copy retry window")]
    [InlineData(null, "forever", "post-copy pause limit")]
    [InlineData("1m", "10s", "must not be shorter than the automatic recovery window")]
    public void Bad_post_copy_pause_settings_are_one_line_errors(string? window, string? limit, string expected)
    {
        var ex = Assert.Throws<ArgumentException>(() => MigrationRequestParser.Parse(
            new StartMigrationRequest { Technique = "postcopy", PostCopyRetryWindow = window, PostCopyPauseLimit = limit }));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Page_connections_default_to_two_and_are_checked()
    {
        Assert.Equal(2, MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "precopy" }).PageConnections);
        Assert.Equal(0, MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "precopy", PageConnections = 0 }).PageConnections);
        Assert.Equal(4, MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "precopy", PageConnections = 4 }).PageConnections);
        var ex = Assert.Throws<ArgumentException>(() => MigrationRequestParser.Parse(new StartMigrationRequest { Technique = "precopy", PageConnections = 9 }));
        Assert.Contains("page connections must be 0 to 8", ex.Message);
    }
}
