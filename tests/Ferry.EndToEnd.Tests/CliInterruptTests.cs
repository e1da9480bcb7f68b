using System.Text.Json;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Ctrl+C on `ferry migrate` (SIGINT to its process id alone, as `kill -INT` sends it): the first
/// cancels the migration at the source agent, follows it to its end, writes the report and exits
/// 130; a second exits at once. Either way the two agents it started are stopped.
/// </summary>
public sealed class CliInterruptTests
{
    private static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(180);
    private static readonly TimeSpan ExitLimit = TimeSpan.FromSeconds(90);

    /// <summary>512 MiB of random bytes at 20 MB/s: the first round alone takes ~27 s, far from its commit point when interrupted.</summary>
    private static CliProcess StartLongMigration(string report) => CliProcess.Start("migrate", "--technique", "precopy", "--max-bandwidth", "20MB/s",
        "--memory", "512MiB", "--fill", "random", "--workload", "memtouch:rate=2000,wss=32MiB,seed=3", "--baseline", "1s", "--report", report);

    /// <summary>A progress line of the running pre-copy (plain output: stderr is not a terminal).</summary>
    private static bool ShowsPreCopy(string line) => line.StartsWith('[') && line.Contains("] precopy", StringComparison.Ordinal);

    /// <summary>Runs <paramref name="scene"/> against a `ferry migrate` whose pre-copy is under way (its two agents started); cleans up whatever the scene leaves.</summary>
    private static void WithRunningMigration(Action<CliProcess, string, IReadOnlyList<ProcessIdentity>> scene)
    {
        string report = Path.Combine(Path.GetTempPath(), $"ferry-interrupt-{Guid.NewGuid():n}.json");
        IReadOnlyList<ProcessIdentity> agents = [];
        try
        {
            using var ferry = StartLongMigration(report);
            ferry.WaitForStderr(ShowsPreCopy, StartLimit, "the pre-copy running");
            agents = ferry.Children();
            Assert.Equal(2, agents.Count);
            scene(ferry, report, agents);
        }
        finally
        {
            foreach (var agent in agents)
            {
                agent.KillIfAlive();
            }
            File.Delete(report);
        }
    }

    [Fact]
    public void First_ctrl_c_cancels_the_migration_writes_a_cancelled_report_and_stops_the_agents() =>
        WithRunningMigration((ferry, report, agents) =>
        {
            ferry.Signal("INT");
            int exit = ferry.WaitForExit(ExitLimit);

            Assert.True(exit == 130, $"exit {exit}; stderr:\n{ferry.Stderr}");
            Assert.Single(ferry.StderrLines, l => l.Contains("cancelling", StringComparison.Ordinal));
            Assert.Contains(ferry.StderrLines, l => l.Contains("cancelled", StringComparison.Ordinal) && l.StartsWith("ferry: migration ", StringComparison.Ordinal));
            Assert.True(File.Exists(report), "no report written; stderr:\n" + ferry.Stderr);
            using var json = JsonDocument.Parse(File.ReadAllText(report));
            Assert.Equal("cancelled", json.RootElement.GetProperty("outcome").GetString());
            Assert.Contains("report written to", ferry.Stdout);
            ProcessIdentity.AssertAllGone(agents, TimeSpan.FromSeconds(30));
        });

    [Fact]
    public void Second_ctrl_c_exits_at_once_with_130_and_stops_the_agents() =>
        WithRunningMigration((ferry, report, agents) =>
        {
            ferry.Signal("INT");
            ferry.WaitForStderr(l => l.Contains("cancelling", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "the first Ctrl+C taken");
            ferry.Signal("INT");
            int exit = ferry.WaitForExit(TimeSpan.FromSeconds(30));

            Assert.True(exit == 130, $"exit {exit}; stderr:\n{ferry.Stderr}");
            // It left without waiting: the path that follows the cancel to its end (and writes the report) never finished.
            Assert.Contains(ferry.StderrLines, l => l.Contains("interrupted again", StringComparison.Ordinal));
            Assert.False(File.Exists(report), "the report was written: ferry waited for the outcome; stderr:\n" + ferry.Stderr);
            ProcessIdentity.AssertAllGone(agents, TimeSpan.FromSeconds(30));
        });
}
