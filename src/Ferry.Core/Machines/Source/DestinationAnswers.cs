namespace Ferry.Core.Machines.Source;

/// <summary>The destination accepted the offer: who it is and how it installs pages.</summary>
public sealed record OfferAcceptance
{
    public string HostName { get; init; } = "";
    public string Os { get; init; } = "";
    public int ProcessorCount { get; init; }

    /// <summary>"uffd" or "copy".</summary>
    public string PageInstall { get; init; } = "";
    public string PageInstallReason { get; init; } = "";

    /// <summary>Page connections the destination takes (at most those asked for).</summary>
    public int PageConnections { get; init; }
}

/// <summary>The destination's verdict on the switchover: its digest of what arrived against the source's.</summary>
public sealed record SwitchoverVerdict
{
    public bool DigestMatches { get; init; }
    public string DestinationDigest { get; init; } = "";
    public double DestinationHashMs { get; init; }

    /// <summary>What did not match, in words; null when all did.</summary>
    public string? Problem { get; init; }
}

/// <summary>The destination's verdict once every post-copy page arrived, with what it measured on its own clock.</summary>
public sealed record PostCopyVerdict
{
    public bool DigestMatches { get; init; }
    public string DestinationDigest { get; init; } = "";
    public string? Problem { get; init; }
    public long Faults { get; init; }
    public double FaultLatencyP50Ms { get; init; }
    public double FaultLatencyP99Ms { get; init; }
    public double FaultLatencyMaxMs { get; init; }
    public double ResumeMs { get; init; }
    public long DuplicatePages { get; init; }
    public long? ResumeOps { get; init; }
    public long? RunOps { get; init; }
    public double? RunMs { get; init; }
    public string FaultPath { get; init; } = "";
    public long ZeroFilledOnFault { get; init; }
}
