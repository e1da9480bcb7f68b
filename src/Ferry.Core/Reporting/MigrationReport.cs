using Ferry.Core.Migration;

namespace Ferry.Core.Reporting;

/// <summary>
/// The machine-readable record of one migration (schema in docs/report.md). Times are in
/// milliseconds, rates in bytes or pages per second, sizes in bytes.
/// </summary>
public sealed record MigrationReport
{
    public const string CurrentSchema = "ferry.report/1";

    public string Schema { get; init; } = CurrentSchema;
    public string MigrationId { get; init; } = "";
    public string Technique { get; init; } = "";
    /// <summary>How it ended; a report that says nothing else is a failure, never a success.</summary>
    public MigrationOutcome Outcome { get; init; } = MigrationOutcome.Failed;
    public string? Error { get; init; }
    public string? StopReason { get; init; }
    public DateTimeOffset StartedAt { get; init; }
    public HostInfo Source { get; init; } = new();
    public HostInfo Destination { get; init; } = new();
    public VmInfo Vm { get; init; } = new();
    public DirtyLogInfo DirtyLog { get; init; } = new();
    public PageInstallInfo PageInstall { get; init; } = new();
    public SettingsInfo Settings { get; init; } = new();
    public TimingMetrics Timing { get; init; } = new();
    public PageMetrics Pages { get; init; } = new();
    public DegradationMetrics Degradation { get; init; } = new();
    public VerificationInfo Verification { get; init; } = new();
    public PostCopyMetrics PostCopy { get; init; } = new();
    public IReadOnlyList<RoundRecord> Rounds { get; init; } = [];
}

public sealed record HostInfo
{
    public string HostName { get; init; } = "";
    public string Endpoint { get; init; } = "";
    public string Os { get; init; } = "";
    public int ProcessorCount { get; init; }
}

public sealed record VmInfo
{
    public string Id { get; init; } = "";
    public string Name { get; init; } = "";
    public long MemoryBytes { get; init; }
    public int Vcpus { get; init; }
    public string Workload { get; init; } = "";
}

public sealed record DirtyLogInfo
{
    public string Backend { get; init; } = "";
    public string Reason { get; init; } = "";
}

public sealed record PageInstallInfo
{
    /// <summary>"uffd" (UFFDIO_COPY runs) or "copy", as the destination chose it.</summary>
    public string Backend { get; init; } = "";
    public string Reason { get; init; } = "";
}

public sealed record SettingsInfo
{
    public long MaxBandwidthBytesPerSecond { get; init; }
    public double? DowntimeLimitMs { get; init; }
    public int? MaxRounds { get; init; }
    public long? DirtyPageThreshold { get; init; }
    public double? MaxRamMultiple { get; init; }
    public double? TimeoutMs { get; init; }

    /// <summary>Hybrid: pre-copy rounds before post-copy (null for other techniques).</summary>
    public int? HybridRounds { get; init; }

    /// <summary>Page connections asked for (<c>--connections</c>).</summary>
    public int PageConnections { get; init; }

    /// <summary>Page connections the migration used besides its control connection (what the destination took; 0: one connection for everything).</summary>
    public int PageConnectionsUsed { get; init; }
}

public sealed record TimingMetrics
{
    /// <summary>Migration start → VM paused at the source (all live rounds).</summary>
    public double PreparationMs { get; init; }

    /// <summary>VM paused at the source → VM running at the destination (as the source sees the ack).</summary>
    public double DowntimeMs { get; init; }

    public DowntimeParts DowntimeParts { get; init; } = new();

    /// <summary>VM running at the destination → no dependency on the source: post-copy's last page installed (0 for pre-copy).</summary>
    public double ResumeMs { get; init; }

    /// <summary>Start → end of all dependency on the source.</summary>
    public double TotalMs { get; init; }
}

public sealed record DowntimeParts
{
    /// <summary>Pause → last dirty page written to the link.</summary>
    public double FinalPagesMs { get; init; }

    /// <summary>vCPU and device state frames.</summary>
    public double StateMs { get; init; }

    /// <summary>Switchover frame sent → resume acknowledged (digest check, commit, resume at the destination).</summary>
    public double SwitchoverMs { get; init; }

    /// <summary>Part of the switchover measured at the destination: switchover received → VM running.</summary>
    public double DestinationResumeMs { get; init; }
}

public sealed record PageMetrics
{
    public long GuestPages { get; init; }
    public long Sent { get; init; }
    public long Unique { get; init; }
    public long Resent { get; init; }
    public long ZeroSent { get; init; }
    public long NeverWrittenSkipped { get; init; }
    public long WireBytes { get; init; }
    public long RawBytes { get; init; }
}

public sealed record DegradationMetrics
{
    public double BaselineWindowMs { get; init; }
    public double BaselineOpsPerSecond { get; init; }

    /// <summary>Guest operations at the source, start → pause (or → end when it never paused).</summary>
    public long SourceOps { get; init; }

    /// <summary>Guest operations at the destination while the migration still depended on the source (post-copy: VM running → PostCopyEnd received); 0 when it sent no count.</summary>
    public long DestinationOps { get; init; }

    /// <summary>The span <see cref="DestinationOps"/> covers, on the destination's clock.</summary>
    public double DestinationMs { get; init; }

    /// <summary><see cref="SourceOps"/> + <see cref="DestinationOps"/>: the guest's work wherever it ran.</summary>
    public long DuringOps { get; init; }

    /// <summary><see cref="DuringOps"/> over the total migration time (the downtime counts as zero work).</summary>
    public double DuringOpsPerSecond { get; init; }

    /// <summary>1 − during/baseline, in percent (0 when there is no baseline).</summary>
    public double DegradationPercent { get; init; }

    /// <summary>Throughput during the live rounds only (start → pause), so the pause itself does not count.</summary>
    public double LiveOpsPerSecond { get; init; }

    /// <summary>1 − live/baseline, in percent: what tracking and copying cost the running guest.</summary>
    public double LiveDegradationPercent { get; init; }

    /// <summary>Guest operations in the resume phase (VM running at the destination → last pending page there); null without a resume phase.</summary>
    public long? ResumeOps { get; init; }

    /// <summary><see cref="ResumeOps"/> over <c>timing.resumeMs</c>; null without a resume phase.</summary>
    public double? ResumeOpsPerSecond { get; init; }

    /// <summary>1 − resume/baseline, in percent: what waiting for missing pages cost the guest; null without a resume phase, 0 without a baseline.</summary>
    public double? ResumeDegradationPercent { get; init; }
}

public sealed record VerificationInfo
{
    public string SourceDigest { get; init; } = "";
    public string DestinationDigest { get; init; } = "";
    public bool DigestsMatch { get; init; }

    /// <summary>Time spent hashing pages at the source, off the critical path (during sends).</summary>
    public double SourceHashMs { get; init; }

    /// <summary>Time spent hashing pages at the destination, as they were installed.</summary>
    public double DestinationHashMs { get; init; }

    /// <summary>Time inside the downtime spent folding per-page hashes into the digest.</summary>
    public double DigestInDowntimeMs { get; init; }

    /// <summary>After switchover the paused source copy is rehashed page by page and compared with what was sent.</summary>
    public bool? SourceRehashMatches { get; init; }

    public double SourceRehashMs { get; init; }
}

public sealed record RoundRecord
{
    public int Round { get; init; }
    public string Kind { get; init; } = "live";
    public long PagesSent { get; init; }
    public long PagesDirtied { get; init; }
    public long WireBytes { get; init; }
    public double DurationMs { get; init; }
    public double BandwidthBytesPerSecond { get; init; }
    public double DirtyPagesPerSecond { get; init; }
    public string Decision { get; init; } = "";
    public string Reason { get; init; } = "";
}

/// <summary>Post-copy's own figures (all zero when the migration did not switch to post-copy).</summary>
public sealed record PostCopyMetrics
{
    /// <summary>True when the VM resumed at the destination before all its pages had arrived.</summary>
    public bool Used { get; init; }

    /// <summary>Why post-copy started: the technique, or the policy's reason to switch.</summary>
    public string SwitchReason { get; init; } = "";

    /// <summary>Pre-copy rounds run before the switch (0 for pure post-copy).</summary>
    public int PreCopyRounds { get; init; }

    /// <summary>Pages still at the source when the VM resumed at the destination.</summary>
    public long PendingAtSwitchover { get; init; }

    /// <summary>Times a destination vCPU touched a page that had not arrived and waited for it.</summary>
    public long Faults { get; init; }

    public double FaultLatencyP50Ms { get; init; }
    public double FaultLatencyP99Ms { get; init; }
    public double FaultLatencyMaxMs { get; init; }

    /// <summary>How the destination caught accesses to missing pages ("userfaultfd: …" or "software: …").</summary>
    public string FaultPath { get; init; } = "";

    /// <summary>Kernel path: never-written pages the guest touched, zero-filled by the destination's resolver (a subset of <see cref="ZeroFilledLocally"/>).</summary>
    public long ZeroFilledOnFault { get; init; }

    /// <summary>Without a bandwidth limit: the rate the push was paced at, 90 % of the link's measured delivery rate (0: not paced automatically).</summary>
    public double AutoPacedBytesPerSecond { get; init; }

    /// <summary>The link rate the automatic pacing is based on: the best window of acknowledged bytes while the push ran unpaced (0: not measured).</summary>
    public double MeasuredLinkBytesPerSecond { get; init; }

    /// <summary>Pages sent because the destination asked for them (a fault).</summary>
    public long DemandPages { get; init; }

    /// <summary>Pages sent by the background push, outside a pre-paging window.</summary>
    public long PushPages { get; init; }

    /// <summary>Pages sent as neighbours of a fault (within the pre-paging window).</summary>
    public long PrePagedPages { get; init; }

    /// <summary>Never-written pages the destination made zero locally: never sent.</summary>
    public long ZeroFilledLocally { get; init; }

    /// <summary>Requests for pages already on their way (the push or an earlier request sent them): not sent twice.</summary>
    public long RequestsAlreadySent { get; init; }

    /// <summary>Times the link broke after switchover and post-copy resumed over a new connection.</summary>
    public int Recoveries { get; init; }

    /// <summary>Pages sent before a break that never arrived, and were sent again after it.</summary>
    public long PagesSentAgain { get; init; }

    /// <summary>Pages the destination received after switchover while it already had them (measured there): sent for nothing.</summary>
    public long DuplicatePages { get; init; }

    /// <summary>Time post-copy spent paused (link down), all breaks together, on the source's clock.</summary>
    public double PausedMs { get; init; }
}
