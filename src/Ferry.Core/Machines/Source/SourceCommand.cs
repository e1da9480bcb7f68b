namespace Ferry.Core.Machines.Source;

/// <summary>What the source machine wants its driver to do next.</summary>
public enum SourceCommandKind
{
    /// <summary>Write the Offer (the VM's description and the technique) to the destination.</summary>
    SendOffer,

    /// <summary>Open <see cref="SourceCommand.Round"/> page connections to the destination; report <see cref="SourceMigrationMachine.HandlePageConnectionsOpen"/>.</summary>
    OpenPageConnections,

    /// <summary>Start the dirty log: from now on every guest write is recorded.</summary>
    StartDirtyLog,

    /// <summary>Pause the VM's vCPUs, then report <see cref="SourceMigrationMachine.HandlePaused"/>.</summary>
    PauseVm,

    /// <summary>
    /// Send one round: <see cref="SourceCommand.Pages"/> says which pages, each batch paced by
    /// <see cref="SourceMigrationMachine.SendDelay"/> and reported with <see cref="SourceMigrationMachine.HandleBatchSent"/>,
    /// then the round-end marker(s), then <see cref="SourceMigrationMachine.HandleRoundSent"/>.
    /// </summary>
    SendPages,

    /// <summary>Get and clear the dirty log into the pending set; report <see cref="SourceMigrationMachine.HandleDirtyHarvested"/>.</summary>
    HarvestDirtyLog,

    /// <summary>VM paused: merge the last harvest into the pending set and stop the log; report <see cref="SourceMigrationMachine.HandleFinalDirtyPages"/>.</summary>
    TakeFinalDirtyPages,

    /// <summary>Pure post-copy: every page the guest ever wrote is pending; report <see cref="SourceMigrationMachine.HandlePostCopyPagesCollected"/>.</summary>
    CollectPostCopyPages,

    /// <summary>Write the vCPU and device state; report <see cref="SourceMigrationMachine.HandleStateSent"/>.</summary>
    SendState,

    /// <summary>Post-copy: write the map of pages still here (after the state); report <see cref="SourceMigrationMachine.HandlePendingMapSent"/>.</summary>
    SendPendingMap,

    /// <summary>Fold the page hashes into the digest and write Switchover; report <see cref="SourceMigrationMachine.HandleSwitchoverSent"/>.</summary>
    SendSwitchover,

    /// <summary>Write Commit: the point of no return. Report <see cref="SourceMigrationMachine.HandleCommitSent"/>.</summary>
    SendCommit,

    /// <summary>Post-copy without a bandwidth limit: read the link's delivery counter; report <see cref="SourceMigrationMachine.HandleLinkSample"/>.</summary>
    SampleLink,

    /// <summary>Post-copy: answer every page request that has arrived (pages already sent are skipped); report <see cref="SourceMigrationMachine.HandleDemandAnswered"/>.</summary>
    AnswerDemand,

    /// <summary>Post-copy: push up to <see cref="SourceCommand.MaxPages"/> pending pages in pre-paging order; report <see cref="SourceMigrationMachine.HandlePushed"/>.</summary>
    PushPages,

    /// <summary>Post-copy: the last page is out: flush, write PostCopyEnd with the digest; report <see cref="SourceMigrationMachine.HandlePostCopyEndSent"/>.</summary>
    SendPostCopyEnd,

    /// <summary>Post-copy paused: one attempt to reach the destination again; report <see cref="SourceMigrationMachine.HandleReconnected"/> or <see cref="SourceMigrationMachine.HandleReconnectFailed"/>.</summary>
    Reconnect,

    /// <summary>The destination runs the VM: rehash the paused source copy against what was sent; report <see cref="SourceMigrationMachine.HandleSourceCopyVerified"/>.</summary>
    VerifySourceCopy,

    /// <summary>Best effort: tell the destination why the migration ends (<see cref="SourceCommand.Reason"/>). No report.</summary>
    TellDestination,

    /// <summary>The migration failed before the commit point: the source VM runs on (if it was paused, resume it). No report.</summary>
    ResumeVm,
}

/// <summary>Which pages a <see cref="SourceCommandKind.SendPages"/> round sends.</summary>
public enum PageSelection
{
    /// <summary>Every page the guest has ever written (never-written pages are zero at both ends and skipped).</summary>
    AllPopulated,

    /// <summary>The pending set: what the last harvest (or, after the pause, the last harvests) found dirty.</summary>
    Pending,
}

/// <summary>What a round is, as the report's per-round table names it.</summary>
public enum RoundKind
{
    /// <summary>A pre-copy round while the VM runs.</summary>
    Live,

    /// <summary>The copy while the VM is paused (the static copy, or pre-copy's last round).</summary>
    StopAndCopy,

    /// <summary>Pages sent after a post-copy switchover.</summary>
    PostCopy,
}

/// <summary>One command; the fields a kind does not use are zero.</summary>
public readonly record struct SourceCommand(
    SourceCommandKind Kind,
    int Round = 0,
    PageSelection Pages = PageSelection.AllPopulated,
    RoundKind RoundKind = RoundKind.Live,
    int MaxPages = 0,
    string? Reason = null)
{
    public override string ToString() => Kind switch
    {
        SourceCommandKind.SendPages => $"SendPages(round {Round}, {Pages}, {RoundKind})",
        SourceCommandKind.PushPages => $"PushPages({MaxPages})",
        SourceCommandKind.TellDestination => $"TellDestination({Reason})",
        _ => Kind.ToString(),
    };
}

public static class RoundKindNames
{
    /// <summary>The name in the report's per-round table.</summary>
    public static string ToWire(this RoundKind kind) => kind switch
    {
        RoundKind.StopAndCopy => "stop-and-copy",
        RoundKind.PostCopy => "post-copy",
        _ => "live",
    };
}
