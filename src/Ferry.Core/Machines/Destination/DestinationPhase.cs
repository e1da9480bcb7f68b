using System.Collections.Frozen;
using System.Text.Json.Serialization;

namespace Ferry.Core.Machines.Destination;

/// <summary>Where the destination side of a migration is; the legal moves are in <see cref="DestinationPhases"/>.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<DestinationPhase>))]
public enum DestinationPhase
{
    /// <summary>Connected and authenticated; the first frame has not come.</summary>
    [JsonStringEnumMemberName("awaiting offer")] AwaitingOffer,

    /// <summary>Offer accepted: pages and state arrive into fresh guest RAM that no VM runs on.</summary>
    [JsonStringEnumMemberName("receiving")] Receiving,

    /// <summary>Switchover received: waiting for every page the source says it sent, then giving the verdict.</summary>
    [JsonStringEnumMemberName("switchover")] Switchover,

    /// <summary>Verdict given (the digests agree): waiting for the commit.</summary>
    [JsonStringEnumMemberName("awaiting commit")] AwaitingCommit,

    /// <summary>Committed: the VM is being started here.</summary>
    [JsonStringEnumMemberName("resuming")] Resuming,

    /// <summary>The VM runs here while pages still arrive from the source.</summary>
    [JsonStringEnumMemberName("post-copy")] PostCopy,

    /// <summary>The link broke during post-copy: the VM's vCPUs on missing pages wait for the source to reconnect.</summary>
    [JsonStringEnumMemberName("post-copy paused")] PostCopyPaused,

    /// <summary>The source said the last page is out: waiting for it, then giving the verdict.</summary>
    [JsonStringEnumMemberName("post-copy end")] PostCopyEnd,

    /// <summary>The VM runs here and needs nothing from the source.</summary>
    [JsonStringEnumMemberName("completed")] Completed,

    /// <summary>Nothing kept: before the commit whatever arrived was discarded; after it the VM was stopped and discarded.</summary>
    [JsonStringEnumMemberName("failed")] Failed,
}

/// <summary>The destination's legal phase transitions, in one table (checked by the machine and by the property tests).</summary>
public static class DestinationPhases
{
    private static readonly FrozenDictionary<DestinationPhase, DestinationPhase[]> Next = new Dictionary<DestinationPhase, DestinationPhase[]>
    {
        [DestinationPhase.AwaitingOffer] = [DestinationPhase.Receiving, DestinationPhase.Failed],
        [DestinationPhase.Receiving] = [DestinationPhase.Switchover, DestinationPhase.Failed],
        [DestinationPhase.Switchover] = [DestinationPhase.AwaitingCommit, DestinationPhase.Failed],
        [DestinationPhase.AwaitingCommit] = [DestinationPhase.Resuming, DestinationPhase.Failed],
        [DestinationPhase.Resuming] = [DestinationPhase.Completed, DestinationPhase.PostCopy, DestinationPhase.Failed],
        [DestinationPhase.PostCopy] = [DestinationPhase.PostCopyEnd, DestinationPhase.PostCopyPaused, DestinationPhase.Failed],
        [DestinationPhase.PostCopyPaused] = [DestinationPhase.PostCopy, DestinationPhase.Failed],
        [DestinationPhase.PostCopyEnd] = [DestinationPhase.Completed, DestinationPhase.PostCopyPaused, DestinationPhase.Failed],
        [DestinationPhase.Completed] = [],
        [DestinationPhase.Failed] = [],
    }.ToFrozenDictionary();

    public static IReadOnlyList<DestinationPhase> From(DestinationPhase from) => Next[from];

    public static bool IsLegal(DestinationPhase from, DestinationPhase to) => Array.IndexOf(Next[from], to) >= 0;

    public static bool IsFinal(this DestinationPhase phase) => Next[phase].Length == 0;

    /// <summary>True once the VM runs (or is starting) here.</summary>
    public static bool VmRunsHere(this DestinationPhase phase) =>
        phase is DestinationPhase.Resuming or DestinationPhase.PostCopy or DestinationPhase.PostCopyPaused or DestinationPhase.PostCopyEnd;

    /// <summary>The name people read (and JSON carries).</summary>
    public static string ToWire(this DestinationPhase phase) => phase switch
    {
        DestinationPhase.AwaitingOffer => "awaiting offer",
        DestinationPhase.Receiving => "receiving",
        DestinationPhase.Switchover => "switchover",
        DestinationPhase.AwaitingCommit => "awaiting commit",
        DestinationPhase.Resuming => "resuming",
        DestinationPhase.PostCopy => "post-copy",
        DestinationPhase.PostCopyPaused => "post-copy paused",
        DestinationPhase.PostCopyEnd => "post-copy end",
        DestinationPhase.Completed => "completed",
        _ => "failed",
    };
}
