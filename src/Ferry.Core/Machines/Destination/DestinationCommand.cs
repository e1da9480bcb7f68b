namespace Ferry.Core.Machines.Destination;

public enum DestinationCommandKind
{
    /// <summary>Allocate guest RAM for the offered VM, make ready for <see cref="DestinationCommand.Value"/> page connections, and write OfferAccepted.</summary>
    AcceptOffer,

    /// <summary>Write an Abort with <see cref="DestinationCommand.Reason"/> (refusal or failure), best effort.</summary>
    TellSource,

    /// <summary>Acknowledge round <see cref="DestinationCommand.Value"/>: every page of it is installed.</summary>
    AckRound,

    /// <summary>Wait until <see cref="DestinationCommand.Value"/> pages have arrived (on every connection), then report <see cref="DestinationMigrationMachine.HandlePagesSettled"/>.</summary>
    AwaitPages,

    /// <summary>Write SwitchoverReady with <see cref="DestinationCommand.Verdict"/>.</summary>
    SendSwitchoverVerdict,

    /// <summary>Build the VM over the received RAM and start it (post-copy: with its missing pages trapped); report <see cref="DestinationMigrationMachine.HandleVmRunning"/>.</summary>
    StartVm,

    /// <summary>Write Resumed with the destination's part of the switchover (<see cref="DestinationCommand.Milliseconds"/>).</summary>
    SendResumed,

    /// <summary>Write PostCopyComplete with <see cref="DestinationCommand.Verdict"/> and what was measured here.</summary>
    SendPostCopyVerdict,

    /// <summary>Every page is here: guest RAM leaves post-copy mode; the VM needs nothing from the source.</summary>
    EndPostCopy,

    /// <summary>The link broke: stop counting page waits toward their timeout until the source is back.</summary>
    PausePageWaits,

    /// <summary>Wait for the source's new connection (the machine's deadline bounds it); report <see cref="DestinationMigrationMachine.HandleSourceReconnected"/>.</summary>
    AwaitSource,

    /// <summary>On the new connection: write what is still missing, then repeat the open page requests; page waits count again.</summary>
    ResumeOnNewConnection,

    /// <summary>The migration failed: let waiting vCPUs go, stop the VM if it ran, free guest RAM.</summary>
    Discard,
}

/// <summary>What the destination says at switchover or at the end of post-copy: whether it agrees, and if not, why.</summary>
public readonly record struct DestinationVerdict(bool DigestMatches, ulong Digest, string? Problem);

/// <summary>One destination command; fields a kind does not use are zero.</summary>
public readonly record struct DestinationCommand(DestinationCommandKind Kind, long Value = 0, double Milliseconds = 0, string? Reason = null,
    DestinationVerdict Verdict = default, bool PostCopy = false);
