using System.Text.Json.Serialization;

namespace Ferry.Core.Migration;

/// <summary>
/// Where the source side of a migration is. Exactly one at a time; the legal moves between them are
/// written down once, in <see cref="MigrationPhases"/>, and <see cref="Machines.SourceMigrationMachine"/>
/// refuses any other. The JSON names are the strings the API, the progress line and reports have
/// always shown, so nothing a user reads changed when phases became an enum.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<MigrationPhase>))]
public enum MigrationPhase
{
    /// <summary>Offer sent; waiting for the destination to accept it.</summary>
    [JsonStringEnumMemberName("setup")] Setup,

    /// <summary>Live rounds: pages are copied while the VM runs.</summary>
    [JsonStringEnumMemberName("precopy")] PreCopy,

    /// <summary>The policy stopped the rounds; waiting until the destination installed the last live round.</summary>
    [JsonStringEnumMemberName("draining")] Draining,

    /// <summary>Pausing the source VM (and, after live rounds, taking the last dirty pages).</summary>
    [JsonStringEnumMemberName("pausing")] Pausing,

    /// <summary>VM paused: the final pages are sent.</summary>
    [JsonStringEnumMemberName("stop-and-copy")] StopAndCopy,

    /// <summary>vCPU and device state (and, for post-copy, the map of pages still here) are sent.</summary>
    [JsonStringEnumMemberName("state")] State,

    /// <summary>Switchover sent; waiting for the destination's digest verdict, then writing the commit.</summary>
    [JsonStringEnumMemberName("switchover")] Switchover,

    /// <summary>Commit written: from here the destination may run the VM; waiting for it to say it does.</summary>
    [JsonStringEnumMemberName("commit")] Commit,

    /// <summary>The VM runs at the destination; pages still here are sent on demand and pushed.</summary>
    [JsonStringEnumMemberName("post-copy")] PostCopy,

    /// <summary>The link broke after a post-copy switchover; the source keeps its paused copy and tries to reconnect.</summary>
    [JsonStringEnumMemberName("post-copy paused")] PostCopyPaused,

    /// <summary>The last page is out; waiting for the destination to confirm every page by digest.</summary>
    [JsonStringEnumMemberName("post-copy confirm")] PostCopyConfirm,

    /// <summary>The VM runs at the destination and depends on nothing here.</summary>
    [JsonStringEnumMemberName("completed")] Completed,

    /// <summary>Ended without moving the VM (or, after a post-copy switchover, without finishing it).</summary>
    [JsonStringEnumMemberName("failed")] Failed,

    /// <summary>Ended by a cancel before switchover; the source VM runs on.</summary>
    [JsonStringEnumMemberName("cancelled")] Cancelled,

    /// <summary>Ended after the commit point without the destination's confirmation: it may be running the VM, so the source copy stays paused.</summary>
    [JsonStringEnumMemberName("unconfirmed")] Unconfirmed,
}

/// <summary>How a migration ended, as its report and the API say it.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<MigrationOutcome>))]
public enum MigrationOutcome
{
    [JsonStringEnumMemberName("completed")] Completed,
    [JsonStringEnumMemberName("failed")] Failed,
    [JsonStringEnumMemberName("cancelled")] Cancelled,
    [JsonStringEnumMemberName("unconfirmed")] Unconfirmed,
}

/// <summary>Why a migration failed, for code that branches on it (the message says it for people).</summary>
public enum MigrationFailure
{
    PeerDisconnected,
    ProtocolViolation,
    DigestMismatch,
    Refused,
    Aborted,
    Cancelled,
    Timeout,
    Internal,
}
