using System.Collections.Frozen;

namespace Ferry.Core.Migration;

/// <summary>
/// The source's legal phase transitions, in one table. The machine checks every move against it
/// (an illegal one is a bug and throws), and the property tests check the table itself: every
/// phase reaches a final one, and final phases lead nowhere.
/// </summary>
public static class MigrationPhases
{
    private static readonly FrozenDictionary<MigrationPhase, MigrationPhase[]> Next = new Dictionary<MigrationPhase, MigrationPhase[]>
    {
        // Before the commit point every failure is Failed (or Cancelled) and the source VM runs on.
        [MigrationPhase.Setup] = [MigrationPhase.PreCopy, MigrationPhase.Pausing, MigrationPhase.Failed, MigrationPhase.Cancelled],
        [MigrationPhase.PreCopy] = [MigrationPhase.Draining, MigrationPhase.Failed, MigrationPhase.Cancelled],
        [MigrationPhase.Draining] = [MigrationPhase.Pausing, MigrationPhase.Failed, MigrationPhase.Cancelled],
        [MigrationPhase.Pausing] = [MigrationPhase.StopAndCopy, MigrationPhase.State, MigrationPhase.Failed, MigrationPhase.Cancelled],
        [MigrationPhase.StopAndCopy] = [MigrationPhase.State, MigrationPhase.Failed, MigrationPhase.Cancelled],
        [MigrationPhase.State] = [MigrationPhase.Switchover, MigrationPhase.Failed, MigrationPhase.Cancelled],
        [MigrationPhase.Switchover] = [MigrationPhase.Commit, MigrationPhase.Failed, MigrationPhase.Cancelled],
        // The commit point: from here the destination may run the VM, so no path resumes the source copy.
        [MigrationPhase.Commit] = [MigrationPhase.Completed, MigrationPhase.PostCopy, MigrationPhase.Unconfirmed],
        [MigrationPhase.PostCopy] = [MigrationPhase.PostCopyConfirm, MigrationPhase.PostCopyPaused, MigrationPhase.Failed, MigrationPhase.Unconfirmed],
        [MigrationPhase.PostCopyPaused] = [MigrationPhase.PostCopy, MigrationPhase.Failed, MigrationPhase.Unconfirmed],
        [MigrationPhase.PostCopyConfirm] = [MigrationPhase.Completed, MigrationPhase.PostCopyPaused, MigrationPhase.Unconfirmed],
        [MigrationPhase.Completed] = [],
        [MigrationPhase.Failed] = [],
        [MigrationPhase.Cancelled] = [],
        [MigrationPhase.Unconfirmed] = [],
    }.ToFrozenDictionary();

    /// <summary>The phases <paramref name="from"/> may move to.</summary>
    public static IReadOnlyList<MigrationPhase> From(MigrationPhase from) => Next[from];

    public static bool IsLegal(MigrationPhase from, MigrationPhase to) => Array.IndexOf(Next[from], to) >= 0;

    public static bool IsFinal(this MigrationPhase phase) => Next[phase].Length == 0;

    /// <summary>True from the commit frame on: the destination may be running the VM, so the source copy must never run again.</summary>
    public static bool IsPastCommit(this MigrationPhase phase) => phase is MigrationPhase.Commit or MigrationPhase.PostCopy
        or MigrationPhase.PostCopyPaused or MigrationPhase.PostCopyConfirm or MigrationPhase.Unconfirmed;

    /// <summary>The outcome a final phase stands for.</summary>
    public static MigrationOutcome ToOutcome(this MigrationPhase phase) => phase switch
    {
        MigrationPhase.Completed => MigrationOutcome.Completed,
        MigrationPhase.Cancelled => MigrationOutcome.Cancelled,
        MigrationPhase.Unconfirmed => MigrationOutcome.Unconfirmed,
        MigrationPhase.Failed => MigrationOutcome.Failed,
        _ => throw new ArgumentOutOfRangeException(nameof(phase), phase, "not a final phase"),
    };

    /// <summary>The name people read (and JSON carries): "precopy", "post-copy paused"…</summary>
    public static string ToWire(this MigrationPhase phase) => phase switch
    {
        MigrationPhase.Setup => "setup",
        MigrationPhase.PreCopy => "precopy",
        MigrationPhase.Draining => "draining",
        MigrationPhase.Pausing => "pausing",
        MigrationPhase.StopAndCopy => "stop-and-copy",
        MigrationPhase.State => "state",
        MigrationPhase.Switchover => "switchover",
        MigrationPhase.Commit => "commit",
        MigrationPhase.PostCopy => "post-copy",
        MigrationPhase.PostCopyPaused => "post-copy paused",
        MigrationPhase.PostCopyConfirm => "post-copy confirm",
        MigrationPhase.Completed => "completed",
        MigrationPhase.Failed => "failed",
        MigrationPhase.Cancelled => "cancelled",
        MigrationPhase.Unconfirmed => "unconfirmed",
        _ => phase.ToString(),
    };

    /// <summary>The outcome's name in reports and the API.</summary>
    public static string ToWire(this MigrationOutcome outcome) => outcome switch
    {
        MigrationOutcome.Completed => "completed",
        MigrationOutcome.Cancelled => "cancelled",
        MigrationOutcome.Unconfirmed => "unconfirmed",
        _ => "failed",
    };
}
