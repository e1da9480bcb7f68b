using System.Diagnostics;
using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Core.Policy;
using Ferry.Core.Progress;
using Ferry.Core.Reporting;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

public sealed partial class SourceMigration
{
    /// <summary>The whole migration. Returns true once committed; throws on any failure before that.</summary>
    private bool Migrate(RunContext ctx, ReturnPath returnPath, CancellationToken ct)
    {
        SetPhase("setup");
        _writer.Write(FrameType.Offer, ControlJson.Encode(new Offer
        {
            MigrationId = _migrationId,
            VmId = _vm.Id,
            VmName = _vm.Config.Name,
            MemoryBytes = _vm.Config.MemoryBytes,
            Vcpus = _vm.Config.Vcpus,
            Workload = _vm.Config.Workload,
            OpsLimitPerVcpu = _vm.Config.OpsLimitPerVcpu,
            Technique = _options.Technique.ToWire(),
            SourceHost = _sourceHost.HostName,
            VcpuStateBytes = VcpuState.SizeInBytes,
        }));
        _writer.Flush();
        var (type, payload) = returnPath.Take(TimeSpan.FromSeconds(60), ct, "offer acceptance");
        if (type != FrameType.OfferAccepted)
        {
            throw new MigrationFailedException(MigrationFailure.ProtocolViolation, $"destination answered the offer with {type}");
        }
        var accepted = ControlJson.Decode<OfferAccepted>(payload, "offer accepted");
        ctx.PageInstall = new PageInstallInfo { Backend = accepted.PageInstall, Reason = accepted.PageInstallReason };
        ctx.Destination = _destinationEndpoint with
        {
            HostName = accepted.DestinationHost,
            Os = accepted.Os,
            ProcessorCount = accepted.ProcessorCount,
        };

        var pending = new DirtyBitmap(_memory.PageCount);
        var harvest = new DirtyBitmap(_memory.PageCount);
        bool postCopy = false;
        if (_options.Technique == MigrationTechnique.StopAndCopy)
        {
            PauseSource(ctx);
            StartPacing();
            ctx.StopReason = "stop-and-copy: the VM is paused for the whole copy";
            SendAllPopulated(round: 1, kind: "stop-and-copy", ct);
        }
        else if (_options.Technique == MigrationTechnique.PostCopy)
        {
            // No live round: every page ever written is fetched after the VM runs at the destination.
            PauseSource(ctx);
            StartPacing();
            ctx.StopReason = "postcopy: the VM resumes at the destination at once";
            postCopy = true;
            for (long p = 0; p < _memory.PageCount; p++)
            {
                if (_memory.IsPopulated(p))
                {
                    pending.Set(p);
                }
                else
                {
                    _skippedNeverWritten++;
                }
            }
        }
        else
        {
            _dirtyLog.Start();
            StartPacing();
            SendAllPopulated(round: 1, kind: "live", ct);
            long dirtied = _dirtyLog.GetAndClear(pending);
            while (true)
            {
                PolicyDecision decision = CloseLiveRound(dirtied);
                if (decision.Action == PolicyAction.Abort)
                {
                    throw new MigrationFailedException(MigrationFailure.Aborted, $"policy aborted: {decision.Reason}");
                }
                if (decision.Action is PolicyAction.StopAndCopy or PolicyAction.SwitchToPostCopy)
                {
                    ctx.StopReason = decision.Reason;
                    postCopy = decision.Action == PolicyAction.SwitchToPostCopy;
                    break;
                }
                SendPages(pending, _round + 1, "live", ct);
                dirtied = _dirtyLog.GetAndClear(pending);
            }
            // Let the link drain first: pages still in flight would otherwise arrive inside the downtime.
            SetPhase("draining");
            returnPath.WaitForRoundAck(_round, _options.SwitchoverTimeout, ct);
            PauseSource(ctx);
            _dirtyLog.GetAndClear(harvest);
            _dirtyLog.Stop();
            pending.UnionWith(harvest);
            if (!postCopy)
            {
                SendPages(pending, _round + 1, "stop-and-copy", ct);
            }
        }
        if (postCopy)
        {
            return SwitchToPostCopy(ctx, pending, returnPath, ct);
        }
        _writer.Flush();
        ctx.FinalPagesDone = Stopwatch.GetTimestamp();
        _rounds.Add(RoundRecordFor("stop-and-copy", pages: _roundSent, dirtied: 0, decision: "switchover", reason: ctx.StopReason ?? ""));

        SendState();
        ctx.StateDone = Stopwatch.GetTimestamp();
        bool committed = Switchover(ctx, returnPath, ct);
        SetPhase("completed");
        VerifySourceCopy(ctx);
        return committed;
    }

    /// <summary>
    /// Starts the bandwidth limit just before the first page goes out, so waiting for the
    /// destination or starting the dirty log earns no credit to burst past the limit.
    /// </summary>
    private void StartPacing()
    {
        if (_options.MaxBandwidthBytesPerSecond > 0)
        {
            _bucket = new Core.Pacing.TokenBucket(_options.MaxBandwidthBytesPerSecond,
                FrameHeader.Size + PageBatchCodec.MaxPayloadFor(PageBatchCodec.MaxPagesPerBatch), Seconds(_start, Stopwatch.GetTimestamp()));
        }
    }

    private void PauseSource(RunContext ctx)
    {
        SetPhase("pausing");
        _vm.Pause();
        ctx.PausedAt = Stopwatch.GetTimestamp();
        ctx.OpsAtPause = (long)_vm.TotalOps;
    }

    /// <summary>Round 1 (or the static copy): every page ever written; never-written pages are zero at both ends and are skipped.</summary>
    private void SendAllPopulated(int round, string kind, CancellationToken ct)
    {
        // Pages populated while round 1 runs are sent too, so progress follows the scan position.
        BeginRound(round, _memory.PageCount, kind);
        _scanningAll = true;
        var batch = new BatchBuilder(this, round);
        for (long p = 0; p < _memory.PageCount; p++)
        {
            if (!_memory.IsPopulated(p))
            {
                _skippedNeverWritten++;
                _roundScanned++;
                continue;
            }
            _roundScanned++;
            batch.Add(p, ct);
        }
        batch.Finish(ct);
        _scanningAll = false;
        EndRound(round);
    }

    private void SendPages(DirtyBitmap pages, int round, string kind, CancellationToken ct)
    {
        BeginRound(round, pages.Count(), kind);
        var batch = new BatchBuilder(this, round);
        foreach (long p in pages)
        {
            batch.Add(p, ct);
        }
        batch.Finish(ct);
        EndRound(round);
    }

    private void BeginRound(int round, long pages, string kind)
    {
        _round = round;
        _roundPages = pages;
        _roundSent = 0;
        _roundStart = Stopwatch.GetTimestamp();
        _roundWireStart = _writer.BytesWritten;
        _phaseIsFinal = kind != "live";
        SetPhase(kind switch { "live" => "precopy", "post-copy" => "post-copy", _ => "stop-and-copy" });
    }

    private void EndRound(int round)
    {
        Span<byte> b = stackalloc byte[RoundEnd.Size];
        new RoundEnd(round, _roundSent).Write(b);
        WritePaced(FrameType.RoundEnd, b, CancellationToken.None);
    }

    /// <summary>Asks the policy after a live round and records the round.</summary>
    private PolicyDecision CloseLiveRound(long dirtied)
    {
        long now = Stopwatch.GetTimestamp();
        var observation = new RoundObservation(
            Round: _round,
            PagesSent: _roundSent,
            WireBytesSent: _writer.BytesWritten - _roundWireStart,
            PagesDirtied: dirtied,
            Duration: TimeSpan.FromSeconds(Seconds(_roundStart, now)),
            Elapsed: TimeSpan.FromSeconds(Seconds(_start, now)),
            TotalWireBytes: _writer.BytesWritten,
            RamBytes: _memory.SizeBytes);
        PolicyDecision decision = _policy.Decide(observation);
        _lastDirtyRate = observation.DirtyPagesPerSecond;
        _lastShrink = _roundSent > 0 ? (double)dirtied / _roundSent : null;
        _lastBandwidth = observation.BandwidthBytesPerSecond;
        // The record shows exactly what the policy saw.
        _rounds.Add(new RoundRecord
        {
            Round = observation.Round,
            Kind = "live",
            PagesSent = observation.PagesSent,
            PagesDirtied = observation.PagesDirtied,
            WireBytes = observation.WireBytesSent,
            DurationMs = observation.Duration.TotalMilliseconds,
            BandwidthBytesPerSecond = observation.BandwidthBytesPerSecond,
            DirtyPagesPerSecond = observation.DirtyPagesPerSecond,
            Decision = decision.Action.ToString(),
            Reason = decision.Reason,
        });
        return decision;
    }

    private RoundRecord RoundRecordFor(string kind, long pages, long dirtied, string decision, string reason)
    {
        long now = Stopwatch.GetTimestamp();
        double seconds = Seconds(_roundStart, now);
        long wire = _writer.BytesWritten - _roundWireStart;
        return new RoundRecord
        {
            Round = _round,
            Kind = kind,
            PagesSent = pages,
            PagesDirtied = dirtied,
            WireBytes = wire,
            DurationMs = seconds * 1000,
            BandwidthBytesPerSecond = seconds > 0 ? wire / seconds : 0,
            DirtyPagesPerSecond = seconds > 0 ? dirtied / seconds : 0,
            Decision = decision,
            Reason = reason,
        };
    }

    private void SendState()
    {
        SetPhase("state");
        VcpuState[] vcpus = _vm.SnapshotVcpus();
        Span<byte> regs = stackalloc byte[VcpuState.SizeInBytes];
        for (int i = 0; i < vcpus.Length; i++)
        {
            VcpuState.Write(vcpus[i], regs);
            Span<byte> payload = _writer.Begin(FrameType.VcpuState);
            int n = VcpuStateMessage.Write(payload, i, regs);
            _writer.Complete(n);
        }
        _writer.Write(FrameType.DeviceState, ControlJson.Encode(new DeviceState
        {
            NicAddress = "vnic:" + _vm.Id,
            ThrottlePercent = _vm.ThrottlePercent,
        }));
    }

    /// <summary>
    /// Digest check, commit, resume acknowledgement. Returns true when the destination runs the VM.
    /// The digest covers every page as sent so far (a page never sent counts as zeros): in
    /// pre-copy that is all of guest RAM, in post-copy the part that moved before the switch.
    /// </summary>
    private bool Switchover(RunContext ctx, ReturnPath returnPath, CancellationToken ct)
    {
        SetPhase("switchover");
        long t0 = Stopwatch.GetTimestamp();
        ctx.SourceDigest = _digest.Compute();
        ctx.DigestInDowntimeMs = Ms(t0, Stopwatch.GetTimestamp());
        Span<byte> sw = stackalloc byte[Protocol.Messages.Switchover.Size];
        new Switchover(ctx.SourceDigest, _pagesSent, _memory.PageCount, _vm.Config.Vcpus).Write(sw);
        _writer.Write(FrameType.Switchover, sw);
        _writer.Flush();

        var (type, payload) = returnPath.Take(_options.SwitchoverTimeout, ct, "switchover verdict");
        if (type != FrameType.SwitchoverReady)
        {
            throw new MigrationFailedException(MigrationFailure.ProtocolViolation, $"destination answered switchover with {type}");
        }
        ctx.Ready = ControlJson.Decode<SwitchoverReady>(payload, "switchover ready");
        if (!ctx.Ready.DigestMatches)
        {
            throw new MigrationFailedException(MigrationFailure.DigestMismatch,
                $"memory digest mismatch at switchover: source {MemoryDigest.Format(ctx.SourceDigest)}, destination {ctx.Ready.DestinationDigest}" +
                (ctx.Ready.Problem is { } p ? $" ({p})" : ""));
        }
        // Last point of no return: after this frame the destination may run the VM.
        ct.ThrowIfCancellationRequested();
        _writer.Write(FrameType.Commit, []);
        _writer.Flush();
        bool committed = true;
        try
        {
            var (rtype, rpayload) = returnPath.Take(_options.SwitchoverTimeout, CancellationToken.None, "resume confirmation");
            if (rtype != FrameType.Resumed)
            {
                throw new MigrationFailedException(MigrationFailure.ProtocolViolation, $"destination answered commit with {rtype}");
            }
            ctx.ResumedAt = Stopwatch.GetTimestamp();
            ctx.DestinationResumeMs = ControlJson.Decode<Resumed>(rpayload, "resumed").ResumeMs;
        }
        catch (Exception ex)
        {
            throw new CommittedButUnconfirmedException(ex);
        }
        return committed;
    }

    /// <summary>
    /// After the destination runs the VM, the paused source copy is rehashed page by page and
    /// compared with the hashes of what was sent: a check of the dirty log that costs no downtime.
    /// </summary>
    private void VerifySourceCopy(RunContext ctx)
    {
        long t0 = Stopwatch.GetTimestamp();
        bool match = true;
        for (long p = 0; p < _memory.PageCount && match; p++)
        {
            match = _memory.HashPage(p) == _digest.Get(p);
        }
        ctx.RehashMatches = match;
        ctx.RehashMs = Ms(t0, Stopwatch.GetTimestamp());
    }

    private void SetPhase(string phase) => PublishProgress(phase, force: true);

    private void PublishProgress(string? phase = null, bool force = false)
    {
        long now = Stopwatch.GetTimestamp();
        if (!force && Seconds(_lastProgressAt, now) < 0.1)
        {
            return;
        }
        _lastProgressAt = now;
        double elapsed = Seconds(_start, now);
        double roundSeconds = Seconds(_roundStart, now);
        double throughput = roundSeconds > 0.05 ? (_writer.BytesWritten - _roundWireStart) / roundSeconds : _lastBandwidth;
        double? raw = null;
        if (throughput > 0)
        {
            double pageRate = throughput / (PageSize.Bytes + PageBatchCodec.EntryHeaderSize);
            // Before the first harvest the guest's write rate over the send rate stands in for q (an upper bound).
            double shrink = _lastShrink ?? Math.Max(0, _vm.OpsRate(TimeSpan.FromSeconds(1)).OpsPerSecond) / pageRate;
            long total = _scanningAll ? _memory.PopulatedCount() : _roundPages;
            long left = Math.Max(0, total - _roundSent);
            raw = _phaseIsFinal
                ? left / pageRate
                : PreCopyEta.Estimate(_options.PreCopy, _round, total, left, pageRate, shrink, _writer.BytesWritten, _memory.SizeBytes, elapsed);
        }
        string p = phase ?? _progress.Phase;
        _progress = new MigrationProgress
        {
            Phase = p,
            Round = _round,
            RoundPages = _roundPages,
            RoundPagesSent = _scanningAll ? _roundScanned : _roundSent,
            // Never-written pages count as covered: they are zero at both ends and need no bytes.
            RamSentFraction = Math.Min(1.0, (double)(_uniqueSent + _skippedNeverWritten) / _memory.PageCount),
            WireBytes = _writer.BytesWritten,
            DirtyPagesPerSecond = _lastDirtyRate,
            ThroughputBytesPerSecond = throughput,
            EtaSeconds = p == "completed" ? 0 : _eta.Update(elapsed, raw),
            ElapsedSeconds = elapsed,
            Detail = _pauseDetail,
            AwaitingResume = _awaitingResume,
        };
    }

    private long _uniqueSent;
    private bool _phaseIsFinal;
    private double? _lastShrink;
    private long _roundScanned;
    private bool _scanningAll;
    private long _skippedNeverWritten;

    /// <summary>Writes a frame once the bandwidth limit allows it.</summary>
    private void WritePaced(FrameType type, ReadOnlySpan<byte> payload, CancellationToken ct)
    {
        Pace(FrameHeader.Size + payload.Length, ct);
        _writer.Write(type, payload);
    }
}

/// <summary>The commit frame went out but the destination's confirmation did not come back.</summary>
internal sealed class CommittedButUnconfirmedException(Exception inner)
    : Exception("commit sent, resume not confirmed: " + inner.Message, inner);
