using System.Diagnostics;
using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Reporting;
using Ferry.Engine.Destination;
using Ferry.Engine.Telemetry;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Trace;

namespace Ferry.Tests.Engine;

/// <summary>A migration is visible from outside: a span for it with one child per round (and per recovery), and log events at its milestones.</summary>
public sealed class TelemetryTests
{
    /// <summary>Collects what the engine logs (thread-safe: the migration and destination threads both log).</summary>
    private sealed class CollectingLogger : ILogger
    {
        private readonly List<(int Id, LogLevel Level, string Message)> _entries = [];

        public IReadOnlyList<(int Id, LogLevel Level, string Message)> Entries
        {
            get
            {
                lock (_entries)
                {
                    return [.. _entries];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_entries)
            {
                _entries.Add((eventId.Id, logLevel, formatter(state, exception)));
            }
        }
    }

    private static VirtualMachine Started(string id)
    {
        var vm = VirtualMachine.Create(new VmConfig { Id = id, MemoryBytes = 32L << 20, Vcpus = 1, Workload = "memtouch:rate=30000,wss=8MiB,seed=5" });
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 2_000, TimeSpan.FromSeconds(30), "the guest did some work");
        return vm;
    }

    [Fact]
    public void A_migration_records_one_span_with_a_child_per_round()
    {
        var spans = new List<Activity>();
        using TracerProvider tracing = Sdk.CreateTracerProviderBuilder().AddSource(MigrationTelemetry.Name).AddInMemoryExporter(spans).Build();
        using VirtualMachine vm = Started("telemetry-spans");
        var options = new MigrationOptions { Technique = MigrationTechnique.PreCopy, PreCopy = new PreCopyOptions { MaxRounds = 3 }, MaxBandwidthBytesPerSecond = 64L << 20 };
        LoopbackMigration.Outcome outcome = LoopbackMigration.Run(vm, options);
        outcome.Destination?.Dispose();
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Completed, r.Outcome);
        tracing.ForceFlush();
        Activity[] mine;
        lock (spans)
        {
            // Other tests migrate at the same time: take this VM's migration span and its children only.
            Activity root = Assert.Single(spans, s => s.OperationName == "ferry.migration" && (string?)s.GetTagItem("vm.id") == "telemetry-spans");
            mine = [root, .. spans.Where(s => s.ParentSpanId == root.SpanId)];
        }
        Activity migration = mine[0];
        Assert.Equal("completed", migration.GetTagItem("migration.outcome"));
        Assert.Equal(r.Timing.DowntimeMs, (double)migration.GetTagItem("migration.downtime_ms")!);
        Activity[] rounds = mine.Where(s => s.OperationName == "ferry.migration.round").ToArray();
        Assert.Equal(r.Rounds.Count, rounds.Length);
        Assert.Equal(r.Rounds.Select(x => x.Round), rounds.Select(s => (int)s.GetTagItem("round.number")!));
        Assert.Equal(r.Rounds.Select(x => x.PagesSent), rounds.Select(s => (long)s.GetTagItem("round.pages")!));
        Assert.Equal("stop-and-copy", rounds[^1].GetTagItem("round.kind"));
        Assert.Contains(migration.Events, e => e.Name == "phase commit");
    }

    [Fact]
    public void A_post_copy_recovery_is_a_span_of_its_own_and_the_log_tells_the_story()
    {
        var spans = new List<Activity>();
        using TracerProvider tracing = Sdk.CreateTracerProviderBuilder().AddSource(MigrationTelemetry.Name).AddInMemoryExporter(spans).Build();
        using VirtualMachine vm = Started("telemetry-recovery");
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        var limits = new DestinationLimits { PostCopyRecovery = new PostCopyRecoveryRegistry() };
        var log = new CollectingLogger();
        LoopbackMigration.Outcome outcome = LoopbackMigration.Run(vm, options, s => new TruncatingStream(s, limit: 4L << 20), limits: limits, logger: log);
        using VirtualMachine dest = outcome.Destination!;
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        Assert.Equal(1, r.PostCopy.Recoveries);
        tracing.ForceFlush();
        lock (spans)
        {
            Activity root = Assert.Single(spans, s => s.OperationName == "ferry.migration" && (string?)s.GetTagItem("vm.id") == "telemetry-recovery");
            Assert.Single(spans, s => s.ParentSpanId == root.SpanId && s.OperationName == "ferry.migration.recovery");
            Assert.Contains(spans, s => s.ParentSpanId == root.SpanId && s.OperationName == "ferry.migration.round" && (string?)s.GetTagItem("round.kind") == "post-copy");
        }
        int[] ids = [.. log.Entries.Select(e => e.Id)];
        // Started, committed, link lost, reconnected, the post-copy round, completed: in that order.
        int[] story = [100, 103, 104, 106, 101, 107];
        int at = -1;
        foreach (int id in story)
        {
            at = Array.IndexOf(ids, id, at + 1);
            Assert.True(at >= 0, $"log event {id} missing or out of order in: {string.Join(", ", ids)}");
        }
        Assert.Contains(log.Entries, e => e.Id == 104 && e.Level == LogLevel.Warning && e.Message.Contains("post-copy paused", StringComparison.Ordinal));
    }
}
