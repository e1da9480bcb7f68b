using System.Diagnostics;
using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Core.Reporting;
using Ferry.Protocol.Messages;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

public sealed partial class SourceMigration
{
    private MigrationReport BuildReport(RunContext ctx, string outcome, string? error)
    {
        // Post-copy depends on the source until the destination confirmed its last page.
        long end = ctx.CompletedAt != 0 ? ctx.CompletedAt : ctx.ResumedAt != 0 && !ctx.PostCopyUsed ? ctx.ResumedAt : Stopwatch.GetTimestamp();
        bool paused = ctx.PausedAt != 0;
        bool resumed = ctx.ResumedAt != 0;
        double totalMs = Ms(_start, end);
        // The source's share of the guest's work ends at the pause; the destination's share comes from its own count.
        long opsEnd = ctx.OpsAtPause >= 0 ? ctx.OpsAtPause : (long)_vm.TotalOps;
        double liveMs = paused ? Ms(_start, ctx.PausedAt) : totalMs;
        DegradationMetrics degradation = DegradationCalculator.Compute(ctx.Baseline.OpsPerSecond, ctx.Baseline.Covered.TotalMilliseconds,
            opsEnd - ctx.OpsAtStart, liveMs, totalMs, DestinationWorkFrom(ctx.PostCopyComplete));
        var pre = _options.PreCopy;
        return new MigrationReport
        {
            MigrationId = _migrationId,
            Technique = _options.Technique.ToWire(),
            Outcome = outcome,
            Error = error,
            StopReason = ctx.StopReason,
            StartedAt = ctx.StartedAt,
            Source = _sourceHost,
            Destination = ctx.Destination ?? _destinationEndpoint,
            Vm = new VmInfo
            {
                Id = _vm.Id,
                Name = _vm.Config.Name,
                MemoryBytes = _memory.SizeBytes,
                Vcpus = _vm.Config.Vcpus,
                Workload = _vm.Config.Workload,
            },
            DirtyLog = new DirtyLogInfo { Backend = _dirtyLog.Backend, Reason = _dirtyLog.Reason },
            PageInstall = ctx.PageInstall ?? new PageInstallInfo(),
            Settings = new SettingsInfo
            {
                MaxBandwidthBytesPerSecond = _options.MaxBandwidthBytesPerSecond,
                DowntimeLimitMs = pre.DowntimeLimit?.TotalMilliseconds,
                MaxRounds = pre.MaxRounds,
                DirtyPageThreshold = pre.DirtyPageThreshold,
                MaxRamMultiple = pre.MaxRamMultiple,
                TimeoutMs = pre.Timeout?.TotalMilliseconds,
                HybridRounds = _options.Technique == MigrationTechnique.Hybrid ? _options.HybridRounds : null,
            },
            Timing = new TimingMetrics
            {
                PreparationMs = paused ? Ms(_start, ctx.PausedAt) : totalMs,
                DowntimeMs = paused && resumed ? Ms(ctx.PausedAt, ctx.ResumedAt) : 0,
                DowntimeParts = new DowntimeParts
                {
                    FinalPagesMs = paused && ctx.FinalPagesDone != 0 ? Ms(ctx.PausedAt, ctx.FinalPagesDone) : 0,
                    StateMs = ctx.StateDone != 0 ? Ms(ctx.FinalPagesDone, ctx.StateDone) : 0,
                    SwitchoverMs = resumed ? Ms(ctx.StateDone, ctx.ResumedAt) : 0,
                    DestinationResumeMs = ctx.DestinationResumeMs,
                },
                ResumeMs = ctx.PostCopyComplete?.ResumeMs ?? 0,
                TotalMs = totalMs,
            },
            Pages = new PageMetrics
            {
                GuestPages = _memory.PageCount,
                Sent = _pagesSent,
                Unique = _uniqueSent,
                Resent = _pagesSent - _uniqueSent,
                ZeroSent = _zeroSent,
                NeverWrittenSkipped = _skippedNeverWritten,
                WireBytes = _writer.BytesWritten,
                RawBytes = _pagesSent * PageSize.Bytes,
            },
            Degradation = degradation,
            Verification = new VerificationInfo
            {
                SourceDigest = ctx.SourceDigest == 0 ? "" : MemoryDigest.Format(ctx.SourceDigest),
                // In post-copy the final verdict is the one given once every page arrived.
                DestinationDigest = ctx.PostCopyUsed ? ctx.PostCopyComplete?.DestinationDigest ?? "" : ctx.Ready?.DestinationDigest ?? "",
                DigestsMatch = ctx.PostCopyUsed ? ctx.PostCopyComplete?.DigestMatches ?? false : ctx.Ready?.DigestMatches ?? false,
                SourceHashMs = _hashTicks * 1000.0 / Stopwatch.Frequency,
                DestinationHashMs = ctx.Ready?.DestinationHashMs ?? 0,
                DigestInDowntimeMs = ctx.DigestInDowntimeMs,
                SourceRehashMatches = ctx.RehashMatches,
                SourceRehashMs = ctx.RehashMs,
            },
            PostCopy = BuildPostCopyMetrics(ctx),
            Rounds = _rounds.ToArray(),
        };
    }

    /// <summary>
    /// The destination's count, once post-copy completed. A pre-copy destination sends none: its VM
    /// ran inside this migration's interval only while the Resumed frame travelled (docs/report.md).
    /// </summary>
    private static DestinationWork? DestinationWorkFrom(PostCopyComplete? complete) =>
        complete is { RunOps: { } runOps, RunMs: { } runMs } ? new DestinationWork
        {
            Ops = runOps,
            Ms = runMs,
            ResumeOps = complete.ResumeOps ?? 0,
            // A resume phase whose ops were not counted would read as 100 % lost: leave it out instead.
            ResumeMs = complete.ResumeOps is null ? 0 : complete.ResumeMs,
        } : null;

    private static PostCopyMetrics BuildPostCopyMetrics(RunContext ctx) => !ctx.PostCopyUsed ? new PostCopyMetrics() : new PostCopyMetrics
    {
        Used = true,
        SwitchReason = ctx.StopReason ?? "",
        PreCopyRounds = ctx.PreCopyRounds,
        PendingAtSwitchover = ctx.PendingAtSwitchover,
        Faults = ctx.PostCopyComplete?.Faults ?? 0,
        FaultLatencyP50Ms = ctx.PostCopyComplete?.FaultLatencyP50Ms ?? 0,
        FaultLatencyP99Ms = ctx.PostCopyComplete?.FaultLatencyP99Ms ?? 0,
        FaultLatencyMaxMs = ctx.PostCopyComplete?.FaultLatencyMaxMs ?? 0,
        FaultPath = ctx.PostCopyComplete?.FaultPath ?? "",
        ZeroFilledOnFault = ctx.PostCopyComplete?.ZeroFilledOnFault ?? 0,
        AutoPacedBytesPerSecond = ctx.AutoPacedBytesPerSecond,
        DemandPages = ctx.DemandPages,
        PushPages = ctx.PushPages,
        PrePagedPages = ctx.PrePagedPages,
        ZeroFilledLocally = ctx.ZeroFilledLocally,
        RequestsAlreadySent = ctx.RequestsAlreadySent,
        Recoveries = ctx.Recoveries,
        PagesSentAgain = ctx.PagesLost,
        DuplicatePages = ctx.PostCopyComplete?.DuplicatePages ?? 0,
        PausedMs = ctx.PausedTicks * 1000.0 / Stopwatch.Frequency,
    };
}
