using System.Text.Json.Serialization;

namespace Ferry.Agent.Migrations;

/// <summary>An outgoing migration as the API lists it: the job around the engine's phases.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<OutgoingState>))]
public enum OutgoingState
{
    /// <summary>Finding the destination's migration endpoint, connecting, authenticating.</summary>
    [JsonStringEnumMemberName("connecting")] Connecting,

    /// <summary>The engine runs the migration (its progress says which phase).</summary>
    [JsonStringEnumMemberName("running")] Running,

    /// <summary>The link broke after a post-copy switchover and has not come back.</summary>
    [JsonStringEnumMemberName("post-copy paused")] PostCopyPaused,

    [JsonStringEnumMemberName("completed")] Completed,
    [JsonStringEnumMemberName("failed")] Failed,
    [JsonStringEnumMemberName("cancelled")] Cancelled,

    /// <summary>Commit sent (or post-copy's last page out) without confirmation: the source copy stays paused.</summary>
    [JsonStringEnumMemberName("unconfirmed")] Unconfirmed,
}

/// <summary>An incoming connection as the API lists it.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<IncomingState>))]
public enum IncomingState
{
    /// <summary>Connected; the key handshake has not finished.</summary>
    [JsonStringEnumMemberName("handshake")] Handshake,

    /// <summary>The peer could not prove it holds the cluster key (or spoke something else).</summary>
    [JsonStringEnumMemberName("refused")] Refused,

    /// <summary>Receiving a VM (before the switch).</summary>
    [JsonStringEnumMemberName("receiving")] Receiving,

    /// <summary>The VM runs here while pages still arrive.</summary>
    [JsonStringEnumMemberName("post-copy")] PostCopy,

    /// <summary>The link broke during post-copy; waiting for the source to reconnect.</summary>
    [JsonStringEnumMemberName("post-copy paused")] PostCopyPaused,

    /// <summary>This connection was a source coming back for a paused post-copy: it was handed to that migration.</summary>
    [JsonStringEnumMemberName("resumed post-copy")] ResumedPostCopy,

    [JsonStringEnumMemberName("completed")] Completed,
    [JsonStringEnumMemberName("failed")] Failed,
}

public static class MigrationStateNames
{
    public static bool IsFinished(this OutgoingState s) =>
        s is OutgoingState.Completed or OutgoingState.Failed or OutgoingState.Cancelled or OutgoingState.Unconfirmed;

    public static OutgoingState FromOutcome(Core.Migration.MigrationOutcome outcome) => outcome switch
    {
        Core.Migration.MigrationOutcome.Completed => OutgoingState.Completed,
        Core.Migration.MigrationOutcome.Cancelled => OutgoingState.Cancelled,
        Core.Migration.MigrationOutcome.Unconfirmed => OutgoingState.Unconfirmed,
        _ => OutgoingState.Failed,
    };

    /// <summary>The outcome a job that ended before the engine started (or without a report) stands for.</summary>
    public static Core.Migration.MigrationOutcome ToOutcome(this OutgoingState s) => s switch
    {
        OutgoingState.Completed => Core.Migration.MigrationOutcome.Completed,
        OutgoingState.Cancelled => Core.Migration.MigrationOutcome.Cancelled,
        OutgoingState.Unconfirmed => Core.Migration.MigrationOutcome.Unconfirmed,
        _ => Core.Migration.MigrationOutcome.Failed,
    };

    public static string ToWire(this OutgoingState s) => s switch
    {
        OutgoingState.Connecting => "connecting",
        OutgoingState.Running => "running",
        OutgoingState.PostCopyPaused => "post-copy paused",
        OutgoingState.Completed => "completed",
        OutgoingState.Cancelled => "cancelled",
        OutgoingState.Unconfirmed => "unconfirmed",
        _ => "failed",
    };

    /// <summary>While receiving, the listing shows the engine's phase where it says more.</summary>
    public static IncomingState FromPhase(Core.Machines.Destination.DestinationPhase phase) => phase switch
    {
        Core.Machines.Destination.DestinationPhase.PostCopy or Core.Machines.Destination.DestinationPhase.PostCopyEnd => IncomingState.PostCopy,
        Core.Machines.Destination.DestinationPhase.PostCopyPaused => IncomingState.PostCopyPaused,
        _ => IncomingState.Receiving,
    };
}
