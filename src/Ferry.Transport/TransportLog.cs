using Microsoft.Extensions.Logging;

namespace Ferry.Transport;

/// <summary>Every message the transport logs, declared once with its id (source-generated: no cost when disabled).</summary>
internal static partial class TransportLog
{
    [LoggerMessage(200, LogLevel.Debug, "Migration connection to {Remote} open ({Security}) in {Ms:0.0} ms")]
    public static partial void Connected(ILogger logger, string remote, string security, double ms);

    [LoggerMessage(201, LogLevel.Warning, "Migration connection to {Remote} failed: {Reason}")]
    public static partial void ConnectFailed(ILogger logger, string remote, string reason);

    [LoggerMessage(202, LogLevel.Debug, "Migration connection from {Remote} authenticated ({Security})")]
    public static partial void Accepted(ILogger logger, string remote, string security);

    [LoggerMessage(203, LogLevel.Warning, "Migration connection from {Remote} refused: {Reason}")]
    public static partial void Refused(ILogger logger, string remote, string reason);
}
