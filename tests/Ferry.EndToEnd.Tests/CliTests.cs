using System.Diagnostics;
using System.Text.Json;

namespace Ferry.EndToEnd.Tests;

/// <summary>`ferry migrate`, the main job, as a user runs it.</summary>
public sealed class CliTests
{
    private static (int Exit, string Stdout, string Stderr) Run(TimeSpan timeout, params string[] args)
    {
        using var p = Process.Start(AgentProcess.FerryStartInfo(args))!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"ferry {string.Join(' ', args)} did not finish within {timeout.TotalSeconds:0} s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Theory]
    [InlineData("precopy")]
    [InlineData("stop-and-copy")]
    [InlineData("postcopy")]
    [InlineData("hybrid")]
    [InlineData("auto")]
    public void Migrate_with_its_own_agents_completes_and_writes_a_matching_report(string technique)
    {
        string report = Path.Combine(Path.GetTempPath(), $"ferry-cli-{Guid.NewGuid():n}.json");
        try
        {
            var (exit, stdout, stderr) = Run(TimeSpan.FromSeconds(120), "migrate", "--memory", "64MiB",
                "--workload", "memtouch:rate=20000,wss=16MiB,pattern=zipf,seed=7", "--technique", technique,
                "--baseline", "1s", "--report", report, "--json");
            Assert.True(exit == 0, $"exit {exit}; stderr: {stderr}");
            using var fromStdout = JsonDocument.Parse(stdout);
            using var fromFile = JsonDocument.Parse(File.ReadAllText(report));
            var root = fromFile.RootElement;
            Assert.Equal("completed", root.GetProperty("outcome").GetString());
            Assert.Equal(technique, root.GetProperty("technique").GetString());
            Assert.True(root.GetProperty("verification").GetProperty("digestsMatch").GetBoolean());
            Assert.True(root.GetProperty("verification").GetProperty("sourceRehashMatches").GetBoolean());
            Assert.Equal(root.GetProperty("migrationId").GetString(), fromStdout.RootElement.GetProperty("migrationId").GetString());
            var timing = root.GetProperty("timing");
            Assert.True(timing.GetProperty("downtimeMs").GetDouble() > 0);
            Assert.True(timing.GetProperty("totalMs").GetDouble() >= timing.GetProperty("downtimeMs").GetDouble());
            Assert.True(root.GetProperty("pages").GetProperty("sent").GetInt64() > 0);
            Assert.True(root.GetProperty("degradation").GetProperty("baselineOpsPerSecond").GetDouble() > 0);
            if (technique is "postcopy" or "hybrid")
            {
                var postCopy = root.GetProperty("postCopy");
                Assert.True(postCopy.GetProperty("used").GetBoolean());
                Assert.True(timing.GetProperty("resumeMs").GetDouble() >= 0);
                // The destination's count of the guest's work reached the report through the agents.
                Assert.True(root.GetProperty("degradation").GetProperty("destinationMs").GetDouble() > 0);
            }
            if (technique is "precopy" or "stop-and-copy")
            {
                Assert.Equal(JsonValueKind.Null, root.GetProperty("degradation").GetProperty("resumeDegradationPercent").ValueKind);
            }
        }
        finally
        {
            File.Delete(report);
        }
    }

    [Theory]
    [InlineData("--memory", "lots")]
    [InlineData("--workload", "memtouch:pattern=spiral")]
    [InlineData("--technique", "teleport")]
    [InlineData("--max-bandwidth", "fast")]
    [InlineData("--downtime-limit", "-3ms")]
    [InlineData("--no-such-option", "1")]
    public void A_wrong_option_or_value_gets_one_clear_line_and_exit_code_2(string option, string value)
    {
        var (exit, stdout, stderr) = Run(TimeSpan.FromSeconds(60), "migrate", option, value);
        Assert.Equal(2, exit);
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("ferry: ", lines[0]);
        Assert.Equal("", stdout.Trim());
    }
}
