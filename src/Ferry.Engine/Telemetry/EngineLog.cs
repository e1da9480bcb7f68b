using Microsoft.Extensions.Logging;

namespace Ferry.Engine.Telemetry;

/// <summary>Every message the engine logs, declared once with its id (source-generated: no cost when disabled).</summary>
internal static partial class EngineLog
{
    [LoggerMessage(100, LogLevel.Information, "Migration {MigrationId} of VM {VmId} ({MemoryBytes} bytes) by {Technique} started; {PageConnections} page connections asked for")]
    public static partial void Started(ILogger logger, string migrationId, string vmId, long memoryBytes, string technique, int pageConnections);

    [LoggerMessage(101, LogLevel.Information, "Migration {MigrationId} round {Round} ({Kind}): {Pages} pages, {WireBytes} bytes in {DurationMs:0.0} ms; {Dirtied} dirtied; {Decision}: {Reason}")]
    public static partial void RoundEnded(ILogger logger, string migrationId, int round, string kind, long pages, long wireBytes, double durationMs, long dirtied, string decision, string reason);

    [LoggerMessage(102, LogLevel.Information, "Migration {MigrationId} stops its live rounds: {Reason}")]
    public static partial void Stopping(ILogger logger, string migrationId, string reason);

    [LoggerMessage(103, LogLevel.Information, "Migration {MigrationId} committed: the VM runs at the destination")]
    public static partial void Committed(ILogger logger, string migrationId);

    [LoggerMessage(104, LogLevel.Warning, "Migration {MigrationId} lost its link after the switchover ({Reason}); post-copy paused, reconnecting")]
    public static partial void LinkLost(ILogger logger, string migrationId, string reason);

    [LoggerMessage(105, LogLevel.Information, "Migration {MigrationId}: reconnection attempt failed: {Reason}")]
    public static partial void ReconnectFailed(ILogger logger, string migrationId, string reason);

    [LoggerMessage(106, LogLevel.Information, "Migration {MigrationId} reconnected after {PausedMs:0} ms paused; {PagesLost} pages to send again")]
    public static partial void Recovered(ILogger logger, string migrationId, double pausedMs, long pagesLost);

    [LoggerMessage(107, LogLevel.Information, "Migration {MigrationId} completed in {TotalMs:0} ms (downtime {DowntimeMs:0.0} ms, {WireBytes} bytes, {Rounds} rounds)")]
    public static partial void Completed(ILogger logger, string migrationId, double totalMs, double downtimeMs, long wireBytes, int rounds);

    [LoggerMessage(108, LogLevel.Warning, "Migration {MigrationId} ended {Outcome} ({Failure}): {Error}")]
    public static partial void Ended(ILogger logger, string migrationId, string outcome, string failure, string error);

    [LoggerMessage(109, LogLevel.Information, "Migration {MigrationId}: {Count} page connections open")]
    public static partial void PageConnectionsOpen(ILogger logger, string migrationId, int count);

    [LoggerMessage(120, LogLevel.Information, "Incoming migration {MigrationId}: receiving VM {VmId} ({MemoryBytes} bytes) with {PageConnections} page connections")]
    public static partial void Receiving(ILogger logger, string migrationId, string vmId, long memoryBytes, int pageConnections);

    [LoggerMessage(121, LogLevel.Information, "Incoming migration {MigrationId}: switchover verdict {Verdict}")]
    public static partial void Verdict(ILogger logger, string migrationId, string verdict);

    [LoggerMessage(122, LogLevel.Information, "Incoming migration {MigrationId}: VM {VmId} runs here{Mode}")]
    public static partial void Running(ILogger logger, string migrationId, string vmId, string mode);

    [LoggerMessage(123, LogLevel.Warning, "Incoming migration {MigrationId}: link to the source broke during post-copy; waiting for it to reconnect")]
    public static partial void Paused(ILogger logger, string migrationId);

    [LoggerMessage(124, LogLevel.Information, "Incoming migration {MigrationId}: the source reconnected")]
    public static partial void SourceBack(ILogger logger, string migrationId);

    [LoggerMessage(125, LogLevel.Information, "Incoming migration {MigrationId} completed: every page is here")]
    public static partial void IncomingCompleted(ILogger logger, string migrationId);

    [LoggerMessage(126, LogLevel.Warning, "Incoming migration {MigrationId} failed ({Failure}): {Error}")]
    public static partial void IncomingFailed(ILogger logger, string migrationId, string failure, string error);
}
