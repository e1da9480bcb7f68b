using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Ferry.Engine.Telemetry;

/// <summary>
/// The engine's traces and metrics, under one name ("Ferry.Migration") for both: a span per
/// migration with a child per round and per post-copy recovery, and the counters and histograms an
/// operator watches. The host decides where they go (the agent: Prometheus at /metrics, OTLP when
/// configured); with no listener they cost next to nothing.
/// </summary>
public static class MigrationTelemetry
{
    public const string Name = "Ferry.Migration";

    public static readonly ActivitySource Source = new(Name, "1.0");

    private static readonly AsyncLocal<bool> QuietHere = new();

    /// <summary>False inside <see cref="Quiet"/> (on this thread and the threads it starts): nothing is recorded.</summary>
    public static bool Enabled => !QuietHere.Value;

    /// <summary>Records nothing until disposed, here and on threads started meanwhile: for migrations that are not the operator's (the agent's warm-up).</summary>
    public static IDisposable Quiet()
    {
        QuietHere.Value = true;
        return new Restore();
    }

    private sealed class Restore : IDisposable
    {
        public void Dispose() => QuietHere.Value = false;
    }

    public static readonly Meter Meter = new(Name, "1.0");

    /// <summary>Bytes put on the link by sources (frames, headers included), by page kind for page frames.</summary>
    public static readonly Counter<long> WireBytes = Meter.CreateCounter<long>("ferry.migration.wire", "By", "Bytes the source put on the link");

    /// <summary>Pages sent, by kind: live, stop-and-copy, post-copy.</summary>
    public static readonly Counter<long> Pages = Meter.CreateCounter<long>("ferry.migration.pages", "{page}", "Pages sent by sources, by round kind");

    /// <summary>Pages that went as zero markers (no page bytes).</summary>
    public static readonly Counter<long> ZeroPages = Meter.CreateCounter<long>("ferry.migration.zero_pages", "{page}", "Pages sent as zero markers");

    public static readonly Counter<long> Rounds = Meter.CreateCounter<long>("ferry.migration.rounds", "{round}", "Rounds finished, by kind");

    /// <summary>Migrations that ended, by outcome and technique.</summary>
    public static readonly Counter<long> Migrations = Meter.CreateCounter<long>("ferry.migration.migrations", "{migration}", "Migrations that ended, by outcome");

    public static readonly Counter<long> Recoveries = Meter.CreateCounter<long>("ferry.migration.recoveries", "{recovery}", "Post-copy links re-established after a break");

    public static readonly Histogram<double> Downtime = Meter.CreateHistogram<double>("ferry.migration.downtime", "ms", "VM paused at the source → running at the destination");

    public static readonly Histogram<double> TotalTime = Meter.CreateHistogram<double>("ferry.migration.total_time", "ms", "Start → end of all dependency on the source");

    /// <summary>Post-copy: how long a destination vCPU waited for a missing page (recorded by destinations).</summary>
    public static readonly Histogram<double> FaultLatency = Meter.CreateHistogram<double>("ferry.migration.fault_latency", "ms", "Post-copy page fault wait at the destination");

    /// <summary>Pages installed by destinations.</summary>
    public static readonly Counter<long> PagesReceived = Meter.CreateCounter<long>("ferry.migration.pages_received", "{page}", "Pages installed by destinations");
}
