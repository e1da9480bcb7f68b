namespace Ferry.Core.Policy;

public enum PolicyAction
{
    /// <summary>Run another live round over the pages dirtied in the last one.</summary>
    Continue,

    /// <summary>Pause the VM and send what is left with the vCPU and device state.</summary>
    StopAndCopy,

    /// <summary>Give up; the source VM keeps running.</summary>
    Abort,

    /// <summary>Pause the VM, move only its vCPU and device state, run it at the destination and fetch the rest there (post-copy).</summary>
    SwitchToPostCopy,
}

/// <summary>A decision and the plain-words reason that goes into the report.</summary>
public readonly record struct PolicyDecision(PolicyAction Action, string Reason)
{
    public static PolicyDecision Continue(string reason) => new(PolicyAction.Continue, reason);

    public static PolicyDecision StopAndCopy(string reason) => new(PolicyAction.StopAndCopy, reason);

    public static PolicyDecision Abort(string reason) => new(PolicyAction.Abort, reason);

    public static PolicyDecision SwitchToPostCopy(string reason) => new(PolicyAction.SwitchToPostCopy, reason);
}
