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
}
