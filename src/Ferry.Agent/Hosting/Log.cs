using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Hosting;

/// <summary>Every message the agent logs, declared once (source-generated, no cost when disabled).</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Warning, "Refused API request {Method} {Path} from {Remote}: {Reason}")]
    public static partial void ApiRefused(ILogger logger, string method, string path, string remote, string reason);

    [LoggerMessage(2, LogLevel.Warning, "Refused migration connection from {Remote}: {Reason}")]
    public static partial void MigrationRefused(ILogger logger, string remote, string reason);

    [LoggerMessage(3, LogLevel.Information, "Receiving VM {VmId} (migration {MigrationId}) from {Remote}")]
    public static partial void IncomingStarted(ILogger logger, string vmId, string migrationId, string remote);

    [LoggerMessage(4, LogLevel.Information, "VM {VmId} arrived from {Remote} and runs here")]
    public static partial void IncomingCompleted(ILogger logger, string vmId, string remote);

    [LoggerMessage(5, LogLevel.Warning, "Incoming migration from {Remote} failed; nothing kept: {Reason}")]
    public static partial void IncomingFailed(ILogger logger, string remote, string reason);

    [LoggerMessage(6, LogLevel.Information, "Migration {MigrationId} of VM {VmId} to {Target} started")]
    public static partial void OutgoingStarted(ILogger logger, string migrationId, string vmId, string target);

    [LoggerMessage(7, LogLevel.Information, "Migration {MigrationId} of VM {VmId} ended {Outcome} in {TotalMs:0} ms (downtime {DowntimeMs:0.0} ms)")]
    public static partial void OutgoingEnded(ILogger logger, string migrationId, string vmId, string outcome, double totalMs, double downtimeMs);

    [LoggerMessage(8, LogLevel.Warning, "Migration {MigrationId} of VM {VmId} failed; the VM keeps running here: {Reason}")]
    public static partial void OutgoingFailed(ILogger logger, string migrationId, string vmId, string reason);

    [LoggerMessage(15, LogLevel.Error, "Migration {MigrationId} of VM {VmId} ended unconfirmed; the VM is kept paused here because the destination may be running it (resume it with POST /v1/vms/{VmId}/resume?force=true only if the destination is gone): {Reason}")]
    public static partial void OutgoingUnconfirmed(ILogger logger, string migrationId, string vmId, string reason);

    [LoggerMessage(16, LogLevel.Warning, "VM {VmId} resumed here by request (force: {Force}); if its destination runs it too, two copies now run")]
    public static partial void VmForceResumed(ILogger logger, string vmId, bool force);

    [LoggerMessage(17, LogLevel.Information, "Shutting down: refusing new work, waiting up to {TimeoutS:0} s for {Outgoing} outgoing and {Incoming} incoming migrations")]
    public static partial void ShutdownWaiting(ILogger logger, double timeoutS, int outgoing, int incoming);

    [LoggerMessage(18, LogLevel.Warning, "Shutdown timeout passed: cancelling {Outgoing} outgoing and stopping {Incoming} incoming migrations still in progress")]
    public static partial void ShutdownTimedOut(ILogger logger, int outgoing, int incoming);

    [LoggerMessage(19, LogLevel.Information, "Shutdown: every migration in progress ended")]
    public static partial void ShutdownDrained(ILogger logger);

    [LoggerMessage(9, LogLevel.Information, "VM {VmId} created: {Memory} bytes, {Vcpus} vCPUs, {Workload}")]
    public static partial void VmCreated(ILogger logger, string vmId, long memory, int vcpus, string workload);

    [LoggerMessage(10, LogLevel.Information, "Resume of paused post-copy {MigrationId} to {Target} requested: reconnecting")]
    public static partial void ResumeRequested(ILogger logger, string migrationId, string target);

    [LoggerMessage(11, LogLevel.Error, "Migration {MigrationId} of VM {VmId} failed after a post-copy switchover; the source copy is kept paused here: {Reason}")]
    public static partial void OutgoingPostCopyFailed(ILogger logger, string migrationId, string vmId, string reason);

    [LoggerMessage(12, LogLevel.Error, "VM {VmId} (migration {MigrationId}) from {Remote} ran here by post-copy but could not be completed: {Reason}")]
    public static partial void IncomingPostCopyLost(ILogger logger, string vmId, string migrationId, string remote, string reason);

    [LoggerMessage(13, LogLevel.Information, "Migrations use TLS: this host's certificate {Subject} (valid until {NotAfter:u}); peers' certificates must chain to the CA {Authority} ({ClientCertificates})")]
    public static partial void MigrationsOverTls(ILogger logger, string subject, DateTime notAfter, string authority, string clientCertificates);

    [LoggerMessage(14, LogLevel.Information, "Migrations use plain TCP without TLS: peers prove the cluster key, but the stream is not encrypted")]
    public static partial void MigrationsWithoutTls(ILogger logger);
}
