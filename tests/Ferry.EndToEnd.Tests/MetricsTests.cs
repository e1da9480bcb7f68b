using System.Net;
using Ferry.Agent.Api;
using Ferry.Agent.Migrations;

namespace Ferry.EndToEnd.Tests;

/// <summary>An agent serves its migration metrics as Prometheus text at /metrics, without a signature (a scrape target cannot sign).</summary>
public sealed class MetricsTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(90);

    private static async Task<string> Scrape(AgentProcess agent)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using HttpResponseMessage response = await http.GetAsync(new Uri(agent.Api, "/metrics"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType ?? "");
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>The value of the first sample of <paramref name="metric"/> whose labels contain <paramref name="label"/> (0 when absent).</summary>
    private static double Sample(string text, string metric, string label = "")
    {
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith(metric, StringComparison.Ordinal) && (line.Length > metric.Length && line[metric.Length] is '{' or ' ') && line.Contains(label, StringComparison.Ordinal))
            {
                return double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        return 0;
    }

    [Fact]
    public async Task After_a_migration_both_agents_serve_its_counters_at_metrics()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var dest = AgentProcess.Start(key);
        await source.Client.CreateVmAsync(new CreateVmRequest { Id = "metered", Memory = "64MiB", Workload = "memtouch:rate=5000,wss=8MiB,seed=3" }, default);
        var m = await source.Client.StartMigrationAsync(new StartMigrationRequest { VmId = "metered", Target = dest.Api.ToString(), Technique = "precopy" }, default);
        MigrationView done = await Wait.UntilAsync(() => source.Client.GetMigrationAsync(m.Id, default), v => v.State.IsFinished(), Long, "the migration to end");
        Assert.Equal(OutgoingState.Completed, done.State);

        string atSource = await Scrape(source);
        Assert.Equal(1, Sample(atSource, "ferry_migration_migrations_total", "outcome=\"completed\""));
        // Every page frame's bytes are counted (the report adds the control frames, so it says a little more).
        double wire = atSource.Split('\n').Where(l => l.StartsWith("ferry_migration_wire_bytes_total{", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        Assert.InRange(wire, 0.9 * done.Report!.Pages.WireBytes, done.Report.Pages.WireBytes);
        Assert.True(Sample(atSource, "ferry_migration_rounds_total") >= 1);
        Assert.Contains("ferry_migration_downtime_milliseconds_bucket", atSource);

        string atDestination = await Scrape(dest);
        Assert.Equal(done.Report.Pages.Sent, Sample(atDestination, "ferry_migration_pages_received_total"));
    }
}
