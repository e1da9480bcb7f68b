using System.Diagnostics;
using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Microsoft.Extensions.Logging;

namespace Ferry.Engine.Telemetry;

/// <summary>
/// Watches one source machine for the outside world: log events at its milestones, a span for
/// the migration with a child per round and per post-copy recovery, and the migration metrics. It
/// reads the machine (its phase changes, its round records); it decides nothing.
/// </summary>
internal sealed class SourceObserver : IDisposable
{
    private readonly ILogger _logger;
    private readonly SourceMigrationMachine _m;
    private readonly string _id;
    private readonly KeyValuePair<string, object?> _technique;
    private readonly Activity? _migration;
    private Activity? _round;
    private Activity? _recovery;
    private int _roundsSeen;
    private int _recoveriesSeen;
    private readonly bool _enabled;

    public SourceObserver(ILogger logger, SourceMigrationMachine m, string migrationId, string vmId, long memoryBytes)
    {
        _logger = logger;
        _m = m;
        _id = migrationId;
        string technique = m.Settings.Options.Technique.ToWire();
        _technique = new("technique", technique);
        _enabled = MigrationTelemetry.Enabled;
        _migration = _enabled ? MigrationTelemetry.Source.StartActivity("ferry.migration", ActivityKind.Internal) : null;
        _migration?.SetTag("migration.id", migrationId);
        _migration?.SetTag("vm.id", vmId);
        _migration?.SetTag("vm.memory_bytes", memoryBytes);
        _migration?.SetTag("migration.technique", technique);
        Action<MigrationPhase, MigrationPhase>? before = m.PhaseChanged;
        m.PhaseChanged = (from, to) =>
        {
            before?.Invoke(from, to);
            OnPhase(from, to);
        };
        EngineLog.Started(logger, migrationId, vmId, memoryBytes, technique, m.Settings.PageConnections);
    }

    /// <summary>A command is about to run: a page round opens a span of its own.</summary>
    public void OnCommand(in SourceCommand c)
    {
        if (c.Kind == SourceCommandKind.SendPages)
        {
            StartRound(c.Round, c.RoundKind);
        }
        else if (c.Kind == SourceCommandKind.OpenPageConnections)
        {
            EngineLog.PageConnectionsOpen(_logger, _id, c.Round);
        }
    }

    /// <summary>After every turn of the driver: rounds the machine recorded meanwhile are logged and their spans closed.</summary>
    public void AfterStep()
    {
        IReadOnlyList<RoundRecord> rounds = _m.Rounds;
        for (; _roundsSeen < rounds.Count; _roundsSeen++)
        {
            RoundRecord r = rounds[_roundsSeen];
            EngineLog.RoundEnded(_logger, _id, r.Round, r.Kind, r.PagesSent, r.WireBytes, r.DurationMs, r.PagesDirtied, r.Decision, r.Reason);
            if (_enabled)
            {
                MigrationTelemetry.Rounds.Add(1, new KeyValuePair<string, object?>("kind", r.Kind), _technique);
            }
            if (_round is { } span)
            {
                span.SetTag("round.pages", r.PagesSent);
                span.SetTag("round.wire_bytes", r.WireBytes);
                span.SetTag("round.pages_dirtied", r.PagesDirtied);
                span.SetTag("round.decision", r.Decision);
                span.SetTag("round.reason", r.Reason);
                span.Dispose();
                _round = null;
            }
        }
    }

    /// <summary>A page frame went out.</summary>
    public void OnBatch(int pages, int zeroPages, long wireBytes)
    {
        if (!_enabled)
        {
            return;
        }
        var kind = new KeyValuePair<string, object?>("kind", _m.RoundKind.ToWire());
        MigrationTelemetry.Pages.Add(pages, kind);
        MigrationTelemetry.WireBytes.Add(wireBytes, kind);
        if (zeroPages > 0)
        {
            MigrationTelemetry.ZeroPages.Add(zeroPages);
        }
    }

    public void OnReconnectFailed(string reason) => EngineLog.ReconnectFailed(_logger, _id, reason);

    private void StartRound(int round, RoundKind kind)
    {
        _round?.Dispose();
        _round = !_enabled ? null : MigrationTelemetry.Source.StartActivity("ferry.migration.round", ActivityKind.Internal, _migration?.Context ?? default);
        _round?.SetTag("round.number", round);
        _round?.SetTag("round.kind", kind.ToWire());
    }

    private void OnPhase(MigrationPhase from, MigrationPhase to)
    {
        _migration?.AddEvent(new ActivityEvent("phase " + to.ToWire()));
        switch (to)
        {
            case MigrationPhase.Draining:
                EngineLog.Stopping(_logger, _id, _m.StopReason ?? "");
                break;
            case MigrationPhase.Commit:
                EngineLog.Committed(_logger, _id);
                break;
            case MigrationPhase.PostCopy when from == MigrationPhase.Commit:
                // The pages still here go after the switch: that is one more round, the post-copy one.
                StartRound(_m.Round, RoundKind.PostCopy);
                break;
            case MigrationPhase.PostCopyPaused:
                _recovery = !_enabled ? null : MigrationTelemetry.Source.StartActivity("ferry.migration.recovery", ActivityKind.Internal, _migration?.Context ?? default);
                EngineLog.LinkLost(_logger, _id, _m.PauseDetail(TimeSpan.Zero) is { } d ? d : "link lost");
                break;
        }
        if (from == MigrationPhase.PostCopyPaused && to == MigrationPhase.PostCopy)
        {
            _recovery?.SetTag("recovery.pages_sent_again", _m.PagesSentAgain);
            _recovery?.Dispose();
            _recovery = null;
            for (; _enabled && _recoveriesSeen < _m.Recoveries; _recoveriesSeen++)
            {
                MigrationTelemetry.Recoveries.Add(1, _technique);
            }
            EngineLog.Recovered(_logger, _id, _m.PausedTotal.TotalMilliseconds, _m.PagesSentAgain);
        }
    }

    /// <summary>The migration ended: its report closes the spans and goes into the metrics and the log.</summary>
    public void OnEnd(MigrationReport r)
    {
        AfterStep();
        string outcome = r.Outcome.ToWire();
        _round?.Dispose();
        _recovery?.SetStatus(ActivityStatusCode.Error, "post-copy never reconnected");
        _recovery?.Dispose();
        if (_enabled)
        {
            MigrationTelemetry.Migrations.Add(1, new KeyValuePair<string, object?>("outcome", outcome), _technique);
            MigrationTelemetry.TotalTime.Record(r.Timing.TotalMs, _technique);
            if (r.Timing.DowntimeMs > 0)
            {
                MigrationTelemetry.Downtime.Record(r.Timing.DowntimeMs, _technique);
            }
        }
        if (_migration is { } span)
        {
            span.SetTag("migration.outcome", outcome);
            span.SetTag("migration.total_ms", r.Timing.TotalMs);
            span.SetTag("migration.downtime_ms", r.Timing.DowntimeMs);
            span.SetTag("migration.wire_bytes", r.Pages.WireBytes);
            span.SetTag("migration.rounds", r.Rounds.Count);
            if (r.Outcome != MigrationOutcome.Completed)
            {
                span.SetStatus(ActivityStatusCode.Error, r.Error);
            }
        }
        if (r.Outcome == MigrationOutcome.Completed)
        {
            EngineLog.Completed(_logger, _id, r.Timing.TotalMs, r.Timing.DowntimeMs, r.Pages.WireBytes, r.Rounds.Count);
        }
        else
        {
            EngineLog.Ended(_logger, _id, outcome, _m.Failure?.ToString() ?? "", r.Error ?? "");
        }
    }

    public void Dispose()
    {
        _round?.Dispose();
        _recovery?.Dispose();
        _migration?.Dispose();
    }
}
