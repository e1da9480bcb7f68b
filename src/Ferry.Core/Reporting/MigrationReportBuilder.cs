using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Policy;

namespace Ferry.Core.Reporting;

/// <summary>What the report needs that the machine does not decide: who and what moved, and the guest's work as the driver counted it.</summary>
public sealed record SourceReportFacts
{
    public required string MigrationId { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public required HostInfo Source { get; init; }

    /// <summary>The destination as the source addressed it (its host details come from the acceptance).</summary>
    public required HostInfo DestinationEndpoint { get; init; }
    public required VmInfo Vm { get; init; }
    public required DirtyLogInfo DirtyLog { get; init; }

    /// <summary>The guest's rate before the migration, and how much history it covers.</summary>
    public double BaselineOpsPerSecond { get; init; }
    public TimeSpan BaselineCovered { get; init; }

    /// <summary>Guest operations at the source from the start to the pause (or to now, if it never paused).</summary>
    public long SourceOps { get; init; }

    /// <summary>Time the source spent hashing pages as it sent them (off the critical path).</summary>
    public double SourceHashMs { get; init; }
}

/// <summary>
/// The one place a <see cref="MigrationReport"/> is made: from what the source machine recorded
/// (its timeline, counters, rounds and the destination's verdicts) and the driver's facts. The
/// engine and the simulator both build their reports here, so a simulated report and a measured
/// one mean the same thing field by field (docs/report.md).
/// </summary>
public static class MigrationReportBuilder
{
    public static MigrationReport Build(SourceMigrationMachine m, SourceReportFacts facts, TimeSpan now)
    {
        SourceTimeline t = m.Timeline;
        MigrationOptions options = m.Settings.Options;
        // Post-copy depends on the source until the destination confirmed its last page.
        TimeSpan end = t.CompletedAt ?? (t.ResumedAt is { } r && !m.PostCopyUsed ? r : now);
        double totalMs = Ms(t.Start, end);
        double liveMs = t.PausedAt is { } p ? Ms(t.Start, p) : totalMs;
        DegradationMetrics degradation = DegradationCalculator.Compute(facts.BaselineOpsPerSecond, facts.BaselineCovered.TotalMilliseconds,
            facts.SourceOps, liveMs, totalMs, DestinationWorkFrom(m.PostCopyVerdict));
        PreCopyOptions pre = options.PreCopy;
        OfferAcceptance? a = m.Acceptance;
        return new MigrationReport
        {
            MigrationId = facts.MigrationId,
            Technique = options.Technique.ToWire(),
            Outcome = m.Outcome ?? MigrationOutcome.Failed,
            Error = m.Error,
            StopReason = m.StopReason,
            StartedAt = facts.StartedAt,
            Source = facts.Source,
            Destination = a is null ? facts.DestinationEndpoint : facts.DestinationEndpoint with
            {
                HostName = a.HostName,
                Os = a.Os,
                ProcessorCount = a.ProcessorCount,
            },
            Vm = facts.Vm,
            DirtyLog = facts.DirtyLog,
            PageInstall = a is null ? new PageInstallInfo() : new PageInstallInfo { Backend = a.PageInstall, Reason = a.PageInstallReason },
            Settings = new SettingsInfo
            {
                MaxBandwidthBytesPerSecond = options.MaxBandwidthBytesPerSecond,
                DowntimeLimitMs = pre.DowntimeLimit?.TotalMilliseconds,
                MaxRounds = pre.MaxRounds,
                DirtyPageThreshold = pre.DirtyPageThreshold,
                MaxRamMultiple = pre.MaxRamMultiple,
                TimeoutMs = pre.Timeout?.TotalMilliseconds,
                HybridRounds = options.Technique == MigrationTechnique.Hybrid ? options.HybridRounds : null,
                PageConnections = options.PageConnections,
                PageConnectionsUsed = m.PageConnections,
            },
            Timing = Timing(m, totalMs),
            Pages = new PageMetrics
            {
                GuestPages = m.Settings.GuestPages,
                Sent = m.Counters.PagesSent,
                Unique = m.Counters.UniqueSent,
                Resent = m.Counters.PagesSent - m.Counters.UniqueSent,
                ZeroSent = m.Counters.ZeroSent,
                NeverWrittenSkipped = m.Counters.NeverWrittenSkipped,
                WireBytes = m.Counters.WireBytes,
                RawBytes = m.Counters.PagesSent * Paging.PageSize.Bytes,
            },
            Degradation = degradation,
            Verification = new VerificationInfo
            {
                SourceDigest = m.SourceDigest == 0 ? "" : SourceMigrationMachine.FormatDigest(m.SourceDigest),
                // In post-copy the final verdict is the one given once every page arrived.
                DestinationDigest = m.PostCopyUsed ? m.PostCopyVerdict?.DestinationDigest ?? "" : m.SwitchoverVerdict?.DestinationDigest ?? "",
                DigestsMatch = m.PostCopyUsed ? m.PostCopyVerdict?.DigestMatches ?? false : m.SwitchoverVerdict?.DigestMatches ?? false,
                SourceHashMs = facts.SourceHashMs,
                DestinationHashMs = m.SwitchoverVerdict?.DestinationHashMs ?? 0,
                DigestInDowntimeMs = m.DigestInDowntimeMs,
                SourceRehashMatches = m.SourceRehashMatches,
                SourceRehashMs = m.SourceRehashMs,
            },
            PostCopy = PostCopy(m),
            Rounds = m.Rounds.ToArray(),
        };
    }

    private static TimingMetrics Timing(SourceMigrationMachine m, double totalMs)
    {
        SourceTimeline t = m.Timeline;
        return new TimingMetrics
        {
            PreparationMs = t.PausedAt is { } p ? Ms(t.Start, p) : totalMs,
            DowntimeMs = t.PausedAt is { } p2 && t.ResumedAt is { } r ? Ms(p2, r) : 0,
            DowntimeParts = new DowntimeParts
            {
                FinalPagesMs = t.PausedAt is { } p3 && t.FinalPagesDone is { } f ? Ms(p3, f) : 0,
                StateMs = t.StateDone is { } s && t.FinalPagesDone is { } f2 ? Ms(f2, s) : 0,
                SwitchoverMs = t.ResumedAt is { } r2 && t.StateDone is { } s2 ? Ms(s2, r2) : 0,
                DestinationResumeMs = m.DestinationResumeMs,
            },
            ResumeMs = m.PostCopyVerdict?.ResumeMs ?? 0,
            TotalMs = totalMs,
        };
    }

    /// <summary>
    /// The destination's count, once post-copy completed. A pre-copy destination sends none: its VM
    /// ran inside this migration's interval only while the Resumed frame travelled (docs/report.md).
    /// </summary>
    private static DestinationWork? DestinationWorkFrom(PostCopyVerdict? v) =>
        v is { RunOps: { } runOps, RunMs: { } runMs } ? new DestinationWork
        {
            Ops = runOps,
            Ms = runMs,
            ResumeOps = v.ResumeOps ?? 0,
            // A resume phase whose ops were not counted would read as 100 % lost: leave it out instead.
            ResumeMs = v.ResumeOps is null ? 0 : v.ResumeMs,
        } : null;

    private static PostCopyMetrics PostCopy(SourceMigrationMachine m)
    {
        if (!m.PostCopyUsed)
        {
            return new PostCopyMetrics();
        }
        PostCopyVerdict? v = m.PostCopyVerdict;
        return new PostCopyMetrics
        {
            Used = true,
            SwitchReason = m.StopReason ?? "",
            PreCopyRounds = m.PreCopyRounds,
            PendingAtSwitchover = m.PostCopyPending,
            Faults = v?.Faults ?? 0,
            FaultLatencyP50Ms = v?.FaultLatencyP50Ms ?? 0,
            FaultLatencyP99Ms = v?.FaultLatencyP99Ms ?? 0,
            FaultLatencyMaxMs = v?.FaultLatencyMaxMs ?? 0,
            FaultPath = v?.FaultPath ?? "",
            ZeroFilledOnFault = v?.ZeroFilledOnFault ?? 0,
            AutoPacedBytesPerSecond = m.AutoPacedBytesPerSecond,
            MeasuredLinkBytesPerSecond = m.MeasuredLinkBytesPerSecond,
            DemandPages = m.DemandPages,
            PushPages = m.PushPages,
            PrePagedPages = m.PrePagedPages,
            ZeroFilledLocally = m.ZeroFilledLocally,
            RequestsAlreadySent = m.RequestsAlreadySent,
            Recoveries = m.Recoveries,
            PagesSentAgain = m.PagesSentAgain,
            DuplicatePages = v?.DuplicatePages ?? 0,
            PausedMs = m.PausedTotal.TotalMilliseconds,
        };
    }

    private static double Ms(TimeSpan from, TimeSpan to) => (to - from).TotalMilliseconds;
}
