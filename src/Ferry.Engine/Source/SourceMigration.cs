using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Core.Progress;
using Ferry.Core.Reporting;
using Ferry.Core.Tracking;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

/// <summary>The result of the source side: the report, and whether the VM now lives at the destination.</summary>
public sealed record SourceResult(MigrationReport Report, bool VmMoved);

/// <summary>
/// The source side of one migration over an authenticated stream: the engine's driver of
/// <see cref="SourceMigrationMachine"/>. It executes the machine's commands against guest RAM, the
/// dirty log and the connection, and feeds back what happened; it decides nothing. Until the
/// commit frame is written, any failure (destination gone, bad frame, cancel, policy abort) leaves
/// the source VM running and untouched; after it, the destination owns the VM.
/// </summary>
public sealed class SourceMigration : ISendLoop
{
    /// <summary>How long a failed write waits for the return path to say why (an Abort or the end of the stream usually follows at once).</summary>
    private static readonly TimeSpan ReturnPathGrace = TimeSpan.FromMilliseconds(500);

    /// <summary>Longest wait between looks at the machine, so progress stays fresh while nothing happens.</summary>
    private static readonly TimeSpan IdleTick = TimeSpan.FromMilliseconds(250);

    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>The shortest wait this thread makes (a semaphore wait rounds to whole milliseconds): shorter ones are not waited out.</summary>
    private static readonly TimeSpan TimerResolution = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// How long a cancel waits for this thread to take it before the connections are closed under a
    /// write that does not return (a frozen destination): a cancel takes effect within a second in
    /// every phase before the commit point.
    /// </summary>
    private static readonly TimeSpan CancelGrace = TimeSpan.FromMilliseconds(250);

    /// <summary>The longest the Abort frame may take to write: it is a courtesy, not worth holding a cancel or a failure for.</summary>
    private const int AbortWriteTimeoutMs = 250;

    private readonly string _migrationId;
    private readonly VirtualMachine _vm;
    private readonly GuestMemory _memory;
    private readonly MigrationOptions _options;
    private readonly IDirtyLog _dirtyLog;
    private readonly HostInfo _sourceHost;
    private readonly HostInfo _destinationEndpoint;
    private readonly ISourceLinks? _links;
    private readonly Microsoft.Extensions.Logging.ILogger _logger;
    private Telemetry.SourceObserver? _observer;
    private readonly TimeProvider _time;
    private readonly long _epoch;
    private readonly SourceInbox _inbox = new();
    private readonly SourceMachineSettings _settings;
    private readonly SourceProgress _progressBuilder = new();
    private readonly List<IDisposable> _oldLinks = [];
    private readonly DirtyBitmap _pending;
    private Stream _stream;
    private FrameWriter _writer;
    private ReturnPath _returnPath;
    private SourceMigrationMachine? _machine;
    private readonly SentPages _sent;
    private PageSender? _sender;
    private InlinePageOutput? _inline;
    private ChannelPageOutput? _channels;
    private int[] _channelAcks = [];
    private int _generation;
    private PostCopyBacklog? _backlog;
    private CancellationToken _userToken;
    private volatile MigrationProgress _progress = new();
    private volatile bool _postCopyPaused;
    private TimeSpan _lastProgressAt = TimeSpan.FromDays(-1);
    private MigrationPhase _publishedPhase;
    private MigrationPhase _commandPhase;
    private volatile bool _cancelTaken;
    private volatile bool _commitStarted;
    private volatile bool _finished;
    private volatile bool _linksAborted;
    private ITimer? _cancelTimer;
    private bool _scanningAll;
    private long _scanned;

    public SourceMigration(
        string migrationId,
        VirtualMachine vm,
        Stream authenticatedStream,
        MigrationOptions options,
        IDirtyLog dirtyLog,
        HostInfo sourceHost,
        HostInfo destinationEndpoint,
        ISourceLinks? links = null,
        TimeProvider? timeProvider = null,
        Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        options.Validate();
        _migrationId = migrationId;
        _vm = vm;
        _memory = vm.Memory;
        _options = options;
        _dirtyLog = dirtyLog;
        _sourceHost = sourceHost;
        _destinationEndpoint = destinationEndpoint;
        // More connections to the same destination (post-copy recovery) and what the link delivered (automatic
        // post-copy pacing). Null = a broken link after switchover is final, and post-copy is never paced automatically.
        _links = links;
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _epoch = _time.GetTimestamp();
        _stream = authenticatedStream;
        LimitWrites(authenticatedStream);
        _writer = new FrameWriter(authenticatedStream);
        _returnPath = new ReturnPath(authenticatedStream, _memory.PageCount, _inbox);
        _pending = new DirtyBitmap(_memory.PageCount);
        _sent = new SentPages(_memory.PageCount);
        _settings = new SourceMachineSettings
        {
            Options = options,
            GuestPages = _memory.PageCount,
            MaxBatchFrameBytes = FrameHeader.Size + PageBatchCodec.MaxPayloadFor(PageBatchCodec.MaxPagesPerBatch),
            PushFrameBytes = FrameHeader.Size + PageBatchCodec.MaxPayloadFor(SourceMigrationMachine.PushBatchPages),
            CanReconnect = links?.CanOpen == true,
            CanMeasureLink = links is not null,
            PageConnections = links?.CanOpen == true ? options.PageConnections : 0,
            TimerResolution = TimerResolution,
        };
    }

    /// <summary>A consistent snapshot for progress displays; safe to read from any thread.</summary>
    public MigrationProgress Progress => _progress;

    /// <summary>True while post-copy is paused: the link broke after switchover and has not been re-established.</summary>
    public bool IsPostCopyPaused => _postCopyPaused;

    /// <summary>
    /// Asks a paused post-copy to try reaching the destination again now, with a fresh automatic
    /// window (<see cref="MigrationOptions.PostCopyRecoveryTimeout"/>). False when post-copy is not
    /// paused (nothing to resume); safe from any thread.
    /// </summary>
    public bool RequestResume()
    {
        if (!_postCopyPaused)
        {
            return false;
        }
        _inbox.Post(new SourceInput(SourceInputKind.ResumeRequested));
        return true;
    }

    private TimeSpan Now => _time.GetElapsedTime(_epoch);

    /// <summary>
    /// Every write of this migration gives up after the stall timeout without progress: a frozen
    /// destination stops reading, the kernel's buffers fill, and without a limit the write (and the
    /// paused VM with it) waited forever.
    /// </summary>
    private void LimitWrites(Stream stream)
    {
        if (stream.CanTimeout)
        {
            stream.WriteTimeout = (int)Math.Min(int.MaxValue, _options.StallTimeout.TotalMilliseconds);
        }
    }

    /// <summary>Runs the migration to its end on the calling thread (a dedicated one: it blocks).</summary>
    public SourceResult Run(CancellationToken cancellationToken)
    {
        DateTimeOffset startedAt = _time.GetUtcNow();
        _userToken = cancellationToken;
        var baseline = _vm.OpsRate(_options.BaselineWindow);
        long opsAtStart = (long)_vm.TotalOps;
        long opsAtPause = -1;
        var m = new SourceMigrationMachine(_settings, Now);
        _machine = m;
        using var observer = new Telemetry.SourceObserver(_logger, m, _migrationId, _vm.Id, _memory.SizeBytes);
        _observer = observer;
        _sender = new PageSender(_memory, _writer, this, _time, _sent);
        _inline = new InlinePageOutput(_sender, () => _writer, this, m.CountWireBytes, () => m.RoundSent);
        using CancellationTokenRegistration onCancel = cancellationToken.Register(() =>
        {
            _inbox.Post(new SourceInput(SourceInputKind.Cancel));
            _cancelTimer = _time.CreateTimer(_ => AbortIfStuck(), null, CancelGrace, Timeout.InfiniteTimeSpan);
        });
        try
        {
            _returnPath.Start();
            while (!m.IsFinished)
            {
                try
                {
                    Step(m, ref opsAtPause);
                    observer.AfterStep();
                }
                catch (Exception) when (m.Outcome is null && _linksAborted)
                {
                    m.HandleCancel(Now);
                }
                catch (Exception ex) when (m.Outcome is null)
                {
                    // A bug on this side (the machine refused an event, a decode threw): end the migration cleanly, through the machine.
                    m.HandleFailure(MigrationFailure.Internal, "internal error: " + ex.Message, Now);
                }
            }
        }
        finally
        {
            _finished = true;
            _cancelTimer?.Dispose();
            _dirtyLog.Stop();
            // Closing the stream ends the return path's blocking read.
            _stream.Dispose();
            _returnPath.Dispose();
            _channels?.Dispose();
            foreach (IDisposable old in _oldLinks)
            {
                old.Dispose();
            }
            _postCopyPaused = false;
        }
        SourceResult result = Report(m, startedAt, baseline, opsAtStart, opsAtPause);
        observer.OnEnd(result.Report);
        return result;
    }

    /// <summary>One turn of the loop: inputs in, one command out and done, or a wait for the next input or timer.</summary>
    private void Step(SourceMigrationMachine m, ref long opsAtPause)
    {
        {
            {
                DrainInbox(TimeSpan.Zero);
                if (m.TryPoll(Now, out SourceCommand command))
                {
                    _commandPhase = m.Phase;
                    _observer!.OnCommand(command);
                    try
                    {
                        if (command.Kind == SourceCommandKind.PauseVm)
                        {
                            _vm.Pause();
                            opsAtPause = (long)_vm.TotalOps;
                            m.HandlePaused(Now);
                        }
                        else
                        {
                            Execute(m, command);
                        }
                    }
                    catch (Exception ex) when (command.Kind is not (SourceCommandKind.TellDestination or SourceCommandKind.ResumeVm))
                    {
                        ReportFailure(m, ex);
                    }
                    PublishProgress(force: m.Phase != _commandPhase);
                    return;
                }
                if (m.IsFinished)
                {
                    return;
                }
                TimeSpan wait = IdleTick;
                if (m.NextTimeout() is { } at)
                {
                    wait = at - Now;
                    if (wait <= TimeSpan.Zero)
                    {
                        m.HandleTimeout(Now);
                        return;
                    }
                    // Never a wait shorter than the clock can sleep: that would be a spin.
                    wait = wait < TimerResolution ? TimerResolution : wait < IdleTick ? wait : IdleTick;
                }
                DrainInbox(wait);
                if (m.NextTimeout() is { } due && Now >= due)
                {
                    m.HandleTimeout(Now);
                }
                PublishProgress(force: false);
            }
        }
    }

    private SourceResult Report(SourceMigrationMachine m, DateTimeOffset startedAt, (double OpsPerSecond, TimeSpan Covered) baseline, long opsAtStart, long opsAtPause)
    {
        PublishProgress(force: true);
        long sourceOps = (opsAtPause >= 0 ? opsAtPause : (long)_vm.TotalOps) - opsAtStart;
        MigrationReport report = MigrationReportBuilder.Build(m, new SourceReportFacts
        {
            MigrationId = _migrationId,
            StartedAt = startedAt,
            Source = _sourceHost,
            DestinationEndpoint = _destinationEndpoint,
            Vm = new VmInfo
            {
                Id = _vm.Id,
                Name = _vm.Config.Name,
                MemoryBytes = _memory.SizeBytes,
                Vcpus = _vm.Config.Vcpus,
                Workload = _vm.Config.Workload,
            },
            DirtyLog = new DirtyLogInfo { Backend = _dirtyLog.Backend, Reason = _dirtyLog.Reason },
            BaselineOpsPerSecond = baseline.OpsPerSecond,
            BaselineCovered = baseline.Covered,
            SourceOps = sourceOps,
            SourceHashMs = _sender!.HashMs + (_channels?.HashMs ?? 0),
        }, Now);
        return new SourceResult(report, VmMoved: m.Outcome == MigrationOutcome.Completed);
    }

    // ---- commands --------------------------------------------------------------------------------

    private void Execute(SourceMigrationMachine m, SourceCommand command)
    {
        switch (command.Kind)
        {
            case SourceCommandKind.SendOffer:
                Write(m, FrameType.Offer, ControlJson.Encode(new Offer
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
                    VcpuStateBytes = Vm.Cpu.VcpuState.SizeInBytes,
                    PageConnections = _settings.PageConnections,
                }));
                _writer.Flush();
                break;
            case SourceCommandKind.OpenPageConnections:
                _channels = OpenPageConnections(m, command.Round);
                _channelAcks = new int[command.Round];
                m.HandlePageConnectionsOpen(Now);
                break;
            case SourceCommandKind.StartDirtyLog:
                _dirtyLog.Start();
                break;
            case SourceCommandKind.SendPages:
                SendRound(m, command);
                break;
            case SourceCommandKind.HarvestDirtyLog:
                m.HandleDirtyHarvested(_dirtyLog.GetAndClear(_pending), Now);
                break;
            case SourceCommandKind.TakeFinalDirtyPages:
            {
                var last = new DirtyBitmap(_memory.PageCount);
                _dirtyLog.GetAndClear(last);
                _dirtyLog.Stop();
                _pending.UnionWith(last);
                m.HandleFinalDirtyPages(_pending.Count(), _memory.PageCount - _memory.PopulatedCount(), Now);
                break;
            }
            case SourceCommandKind.CollectPostCopyPages:
            {
                long never = 0;
                for (long p = 0; p < _memory.PageCount; p++)
                {
                    if (_memory.IsPopulated(p))
                    {
                        _pending.Set(p);
                    }
                    else
                    {
                        never++;
                    }
                }
                m.HandlePostCopyPagesCollected(_pending.Count(), never, Now);
                break;
            }
            case SourceCommandKind.SendState:
                SendState(m);
                m.HandleStateSent(Now);
                break;
            case SourceCommandKind.SendPendingMap:
            {
                // Its presence is what makes this switchover a post-copy one (a guest has at least one page, so at least one frame goes).
                long before = _writer.BytesWritten;
                PendingPagesMessage.WriteAll(_writer, _pending.WordCount, _pending.CopyWordsTo);
                m.CountWireBytes(_writer.BytesWritten - before);
                _backlog ??= new PostCopyBacklog(_pending);
                m.HandlePendingMapSent(Now);
                break;
            }
            case SourceCommandKind.SendSwitchover:
            {
                long t0 = _time.GetTimestamp();
                ulong digest = _sent.Digest.Compute();
                double digestMs = _time.GetElapsedTime(t0).TotalMilliseconds;
                Span<byte> sw = stackalloc byte[Switchover.Size];
                new Switchover(digest, m.Counters.PagesSent, _memory.PageCount, _vm.Config.Vcpus).Write(sw);
                Write(m, FrameType.Switchover, sw);
                _writer.Flush();
                m.HandleSwitchoverSent(digest, digestMs, Now);
                break;
            }
            case SourceCommandKind.SendCommit:
                // From here a cancel must not close the connection under the commit: the destination may be about to run the VM.
                _commitStarted = true;
                Write(m, FrameType.Commit, []);
                _writer.Flush();
                m.HandleCommitSent(Now);
                break;
            case SourceCommandKind.SampleLink:
                m.HandleLinkSample(_links?.Delivered(_stream), Now);
                break;
            case SourceCommandKind.AnswerDemand:
                AnswerDemand(m, command.Round);
                break;
            case SourceCommandKind.PushPages:
                Push(m, command.Round, command.MaxPages);
                break;
            case SourceCommandKind.SendPostCopyEnd:
            {
                // Every pushed page must be on the wire and counted before the end says how many went.
                if (_channels is not null && !_channels.Flush())
                {
                    break;
                }
                _writer.Flush();
                ulong digest = _sent.Digest.Compute();
                Span<byte> end = stackalloc byte[PostCopyEnd.Size];
                new PostCopyEnd(digest, m.Counters.PagesSent).Write(end);
                Write(m, FrameType.PostCopyEnd, end);
                _writer.Flush();
                m.HandlePostCopyEndSent(digest, Now);
                break;
            }
            case SourceCommandKind.Reconnect:
                Reconnect(m);
                break;
            case SourceCommandKind.VerifySourceCopy:
                VerifySourceCopy(m);
                break;
            case SourceCommandKind.TellDestination:
                TryTellDestination(command.Reason ?? "");
                break;
            case SourceCommandKind.ResumeVm:
                if (_vm.State == VmRunState.Paused)
                {
                    _vm.Resume();
                }
                break;
            default:
                throw new InvalidOperationException($"unknown command {command}");
        }
    }

    private void Write(SourceMigrationMachine m, FrameType type, ReadOnlySpan<byte> payload)
    {
        long before = _writer.BytesWritten;
        _writer.Write(type, payload);
        m.CountWireBytes(_writer.BytesWritten - before);
    }

    /// <summary>Where pages go: the page connections when there are any, else the control connection.</summary>
    private IPageOutput Output => (IPageOutput?)_channels ?? _inline!;

    /// <summary>One round: the pages, then the round-end marker(s). Round 1 and the static copy scan guest RAM; later rounds send the pending set.</summary>
    private void SendRound(SourceMigrationMachine m, SourceCommand command)
    {
        IPageOutput output = Output;
        output.Begin(command.Round, paced: true, PageBatchCodec.MaxPagesPerBatch);
        bool going = true;
        if (command.Pages == PageSelection.AllPopulated)
        {
            // Pages populated while round 1 runs are sent too, so progress follows the scan position.
            _scanningAll = true;
            _scanned = 0;
            long skipped = 0;
            for (long p = 0; p < _memory.PageCount && going; p++)
            {
                _scanned++;
                if (!_memory.IsPopulated(p))
                {
                    skipped++;
                    continue;
                }
                going = output.Add(p);
            }
            m.HandleNeverWrittenSkipped(skipped);
            _scanningAll = false;
        }
        else
        {
            foreach (long p in _pending)
            {
                if (!(going = output.Add(p)))
                {
                    break;
                }
            }
        }
        if (!going || !output.Finish())
        {
            output.Abandon();
            return;
        }
        if (!output.EndRound(command.Round))
        {
            return;
        }
        m.HandleRoundSent(Now);
    }

    /// <summary>Every page request that has arrived, in order; pages already sent (pushed, or asked twice) are skipped.</summary>
    private void AnswerDemand(SourceMigrationMachine m, int round)
    {
        PostCopyBacklog backlog = _backlog!;
        // Answers go on the control connection, ahead of anything pushed on the page connections.
        PageSender sender = _sender!;
        sender.Begin(round, paced: false);
        int taken = 0;
        long sent = 0;
        long already = 0;
        bool going = true;
        try
        {
            while (going && backlog.Requests.TryDequeue(out long requested))
            {
                taken++;
                if (!backlog.Pending[requested])
                {
                    already++;
                    continue;
                }
                backlog.Pending.Clear(requested);
                backlog.Cursor.Recentre(requested);
                sent++;
                going = sender.Add(requested);
            }
            if (going && !sender.Finish())
            {
                going = false;
            }
            if (!going)
            {
                sender.Abandon();
            }
            else
            {
                _writer.Flush();
            }
        }
        finally
        {
            // Even when a write failed: these pages left the pending set, so the machine counts them (a recovery finds them missing and sends them again).
            m.HandleDemandAnswered(taken, sent, already, Now);
        }
    }

    /// <summary>Up to <paramref name="maxPages"/> pending pages in pre-paging order, in one frame.</summary>
    private void Push(SourceMigrationMachine m, int round, int maxPages)
    {
        PostCopyBacklog backlog = _backlog!;
        IPageOutput sender = Output;
        sender.Begin(round, paced: false, maxPages);
        long pushed = 0;
        long prePaged = 0;
        try
        {
            for (int i = 0; i < maxPages && backlog.Cursor.TryNext(out long page, out bool near); i++)
            {
                backlog.Pending.Clear(page);
                pushed++;
                if (near)
                {
                    prePaged++;
                }
                if (!sender.Add(page))
                {
                    break;
                }
            }
            if (!sender.Finish())
            {
                sender.Abandon();
            }
        }
        finally
        {
            // Even when a write failed: these pages left the pending set (see AnswerDemand).
            m.HandlePushed(pushed, prePaged, Now);
        }
    }

    private void SendState(SourceMigrationMachine m)
    {
        Vm.Cpu.VcpuState[] vcpus = _vm.SnapshotVcpus();
        Span<byte> regs = stackalloc byte[Vm.Cpu.VcpuState.SizeInBytes];
        long before = _writer.BytesWritten;
        for (int i = 0; i < vcpus.Length; i++)
        {
            Vm.Cpu.VcpuState.Write(vcpus[i], regs);
            Span<byte> payload = _writer.Begin(FrameType.VcpuState);
            int n = VcpuStateMessage.Write(payload, i, regs);
            _writer.Complete(n);
        }
        _writer.Write(FrameType.DeviceState, ControlJson.Encode(new DeviceState
        {
            NicAddress = "vnic:" + _vm.Id,
            ThrottlePercent = _vm.ThrottlePercent,
        }));
        m.CountWireBytes(_writer.BytesWritten - before);
    }

    /// <summary>
    /// After the destination runs the VM, the paused source copy is rehashed page by page and
    /// compared with the hashes of what was sent: a check of the dirty log that costs no downtime.
    /// </summary>
    private void VerifySourceCopy(SourceMigrationMachine m)
    {
        long t0 = _time.GetTimestamp();
        bool match = true;
        MemoryDigest digest = _sent.Digest;
        for (long p = 0; p < _memory.PageCount && match; p++)
        {
            match = _memory.HashPage(p) == digest.Get(p);
        }
        m.HandleSourceCopyVerified(match, _time.GetElapsedTime(t0).TotalMilliseconds, Now);
    }

    private void TryTellDestination(string reason)
    {
        try
        {
            if (_writer.Error is null && !_linksAborted)
            {
                if (_stream.CanTimeout)
                {
                    _stream.WriteTimeout = AbortWriteTimeoutMs;
                }
                _writer.DiscardOpenFrame();
                _writer.Write(FrameType.Abort, ControlJson.Encode(new Abort { Reason = reason }));
                _writer.Flush();
            }
        }
        catch (Exception)
        {
            // Best effort only: the destination discards everything when the stream ends anyway.
        }
    }

    // ---- post-copy recovery ------------------------------------------------------------------------

    /// <summary>
    /// One attempt: a new connection, PostCopyResume, then the destination's map of what it still
    /// lacks. Pages it lacks that are not pending were lost in flight: they are pending again.
    /// </summary>
    private void Reconnect(SourceMigrationMachine m)
    {
        ReturnPath? link = null;
        Stream? stream = null;
        var deferred = new List<SourceInput>();
        try
        {
            stream = _links!.Open(_userToken);
            LimitWrites(stream);
            var writer = new FrameWriter(stream);
            link = new ReturnPath(stream, _memory.PageCount, _inbox, "ferry-return-path-recovered");
            writer.Write(FrameType.PostCopyResume, ControlJson.Encode(new PostCopyResume { MigrationId = _migrationId }));
            writer.Flush();
            link.Start();
            var missing = new DirtyBitmap(_memory.PageCount);
            ulong[] words = new ulong[Math.Min(missing.WordCount, PendingPagesMessage.MaxWordsPerFrame)];
            for (int first = 0; first < missing.WordCount;)
            {
                var (type, payload) = TakeFrame(link, _options.SwitchoverTimeout, "missing pages after reconnecting", deferred);
                if (type != FrameType.PendingPages)
                {
                    throw new MigrationFailedException(MigrationFailure.ProtocolViolation, $"destination answered a post-copy resume with {type}");
                }
                int n = PendingPagesMessage.Read(payload, first, missing.WordCount, words);
                missing.OrWords(first, words.AsSpan(0, n));
                first += n;
            }
            // The page connections come back too, as a new generation (the destination refuses the old one).
            ChannelPageOutput? channels = _channels is { } old ? OpenPageConnections(m, old.Channels.Count, _generation + 1) : null;
            _generation += channels is null ? 0 : 1;
            // Only now that every connection is back: pages the destination lacks that are not pending were lost in flight.
            long lost = 0;
            foreach (long p in missing)
            {
                if (!_backlog!.Pending[p])
                {
                    _backlog.Pending.Set(p);
                    lost++;
                }
            }
            // The old connections are done: their streams close (ending their readers), the new ones take over.
            _stream.Dispose();
            _oldLinks.Add(_returnPath);
            _channels?.Dispose();
            _channels = channels;
            _stream = stream;
            _writer = writer;
            _returnPath = link;
            _sender!.UseWriter(writer);
            _backlog!.Restart();
            stream = null;
            link = null;
            m.HandleReconnected(lost, Now);
            _postCopyPaused = false;
        }
        catch (OperationCanceledException) when (_userToken.IsCancellationRequested)
        {
            m.HandleCancel(Now);
            m.HandleReconnectFailed("cancelled by request", retryable: true, Now);
        }
        catch (MigrationFailedException refused) when (refused.Kind == MigrationFailure.Aborted)
        {
            // The destination is up and says no post-copy of this migration waits there: its VM is gone.
            m.HandleReconnectFailed($"reconnected, but the destination no longer has this post-copy: {refused.Message}", retryable: false, Now);
        }
        catch (MigrationFailedException violation) when (violation.Kind == MigrationFailure.ProtocolViolation)
        {
            m.HandleReconnectFailed(violation.Message, retryable: false, Now);
        }
        catch (Exception ex)
        {
            string reason = ex is MigrationFailedException ? ex.Message : ReturnPath.Wrap(ex, "reconnecting").Message;
            _observer?.OnReconnectFailed(reason);
            m.HandleReconnectFailed(reason, retryable: true, Now);
        }
        finally
        {
            stream?.Dispose();
            if (link is not null)
            {
                _oldLinks.Add(link);
            }
            foreach (SourceInput input in deferred)
            {
                _inbox.Post(input);
            }
        }
    }

    /// <summary>Waits for the next frame of one connection; its page requests and everything else that arrives meanwhile wait in <paramref name="deferred"/>.</summary>
    private (FrameType, byte[]) TakeFrame(ReturnPath link, TimeSpan timeout, string waitingFor, List<SourceInput> deferred)
    {
        TimeSpan until = Now + timeout;
        while (true)
        {
            TimeSpan left = until - Now;
            if (left <= TimeSpan.Zero)
            {
                throw new MigrationFailedException(MigrationFailure.Timeout, $"destination sent no {waitingFor} within {timeout.TotalSeconds:0} s");
            }
            if (!_inbox.TryTake(out SourceInput input, left < IdleTick ? left : IdleTick))
            {
                _userToken.ThrowIfCancellationRequested();
                continue;
            }
            if (input.Kind == SourceInputKind.Cancel)
            {
                throw new OperationCanceledException(_userToken);
            }
            if (input.From != link)
            {
                if (input.Kind is SourceInputKind.Frame or SourceInputKind.PageRequest or SourceInputKind.RoundAck)
                {
                    continue;
                }
                deferred.Add(input);
                continue;
            }
            switch (input.Kind)
            {
                case SourceInputKind.Frame:
                    return (input.Frame, input.Payload!);
                case SourceInputKind.LinkFailed:
                    throw ReturnPath.Wrap(input.Error!, waitingFor);
                default:
                    deferred.Add(input);
                    break;
            }
        }
    }

    // ---- inputs ----------------------------------------------------------------------------------

    /// <summary>Feeds everything that arrived to the machine, waiting up to <paramref name="wait"/> for the first.</summary>
    private void DrainInbox(TimeSpan wait)
    {
        SourceMigrationMachine m = _machine!;
        if (!_inbox.TryTake(out SourceInput input, wait))
        {
            return;
        }
        do
        {
            Feed(m, input);
        }
        while (_inbox.TryTake(out input, TimeSpan.Zero));
    }

    private void Feed(SourceMigrationMachine m, in SourceInput input)
    {
        TimeSpan now = Now;
        switch (input.Kind)
        {
            case SourceInputKind.Cancel:
                _cancelTaken = true;
                m.HandleCancel(now);
                return;
            case SourceInputKind.ResumeRequested:
                m.HandleResumeRequested(now);
                return;
        }
        if (input.Kind == SourceInputKind.BatchSent)
        {
            // Bytes a page connection wrote count wherever they went (even on one given up on since).
            BatchReport b = input.Batch;
            _observer?.OnBatch(b.Pages, b.ZeroPages, b.WireBytes);
            m.CountWireBytes(b.WireBytes);
            m.Refund(b.TakenBytes - (int)b.WireBytes, now);
            m.HandleBatchSent(b.Pages, b.ZeroPages, b.FirstTime, now);
            return;
        }
        if (input.Channel >= 0)
        {
            FeedChannel(m, input, now);
            return;
        }
        if (input.From != _returnPath)
        {
            // A connection given up on (post-copy recovery): whatever it still says is stale.
            return;
        }
        switch (input.Kind)
        {
            case SourceInputKind.PageRequest:
                _backlog ??= new PostCopyBacklog(_pending);
                _backlog.Requests.Enqueue(input.Value);
                m.HandlePageRequests(1, now);
                break;
            case SourceInputKind.RoundAck:
                m.HandleRoundAcked((int)input.Value, now);
                break;
            case SourceInputKind.LinkFailed:
            {
                MigrationFailedException f = Classify(input.Error!, "during " + m.Phase.ToWire());
                m.HandleLinkBroken(f.Kind, f.Message, now);
                break;
            }
            case SourceInputKind.Frame:
                FeedAnswer(m, input.Frame, input.Payload!, now);
                break;
        }
        _postCopyPaused = m.Phase == MigrationPhase.PostCopyPaused;
    }

    /// <summary>What a page connection said: its round markers, acknowledgements and failure. Stale connections (an earlier generation) are ignored.</summary>
    private void FeedChannel(SourceMigrationMachine m, in SourceInput input, TimeSpan now)
    {
        ChannelPageOutput? channels = _channels;
        if (channels is null || input.Channel >= channels.Channels.Count || channels.Channels[input.Channel].ReturnPath != input.From)
        {
            return;
        }
        switch (input.Kind)
        {
            case SourceInputKind.RoundWritten:
                m.CountWireBytes(input.Batch.WireBytes);
                channels.RoundWritten(input.Channel, input.Value);
                break;
            case SourceInputKind.Flushed:
                channels.Flushed(input.Channel);
                break;
            case SourceInputKind.RoundAck:
                // A round is drained once every page connection has acknowledged it.
                _channelAcks[input.Channel] = Math.Max(_channelAcks[input.Channel], (int)input.Value);
                m.HandleRoundAcked(_channelAcks.Min(), now);
                break;
            case SourceInputKind.LinkFailed:
            {
                if (input.Error is Protocol.ProtocolException { AtFrameBoundary: true })
                {
                    // The destination closed this page connection between frames: it is done with it (it has finished, or it
                    // failed and the control connection says why). Only a write that fails, or a connection cut mid-frame, is a broken link.
                    break;
                }
                MigrationFailedException f = Classify(input.Error!, $"page connection {input.Channel}, during {m.Phase.ToWire()}");
                m.HandleLinkBroken(f.Kind, f.Message, now);
                break;
            }
            case SourceInputKind.Frame:
                m.HandleUnexpectedAnswer($"{input.Frame} on page connection {input.Channel}", now);
                break;
        }
        _postCopyPaused = m.Phase == MigrationPhase.PostCopyPaused;
    }

    /// <summary>Opens <paramref name="count"/> page connections of <paramref name="generation"/>; on any failure closes those opened and throws.</summary>
    private ChannelPageOutput OpenPageConnections(SourceMigrationMachine m, int count, int generation = 0)
    {
        var opened = new List<PageChannel>(count);
        try
        {
            for (int i = 0; i < count; i++)
            {
                Stream link = _links!.Open(_userToken);
                LimitWrites(link);
                var channel = new PageChannel(i, link, _memory, _sent, _time, _inbox);
                opened.Add(channel);
                channel.Hello(_migrationId, generation);
            }
            foreach (PageChannel c in opened)
            {
                c.Start();
            }
            _channelAcks = new int[count];
            return new ChannelPageOutput([.. opened], this);
        }
        catch
        {
            foreach (PageChannel c in opened)
            {
                c.Dispose();
            }
            throw;
        }
    }

    /// <summary>
    /// The cancel's timer: when this thread has not taken the cancel within <see cref="CancelGrace"/>
    /// it is stuck in a write the destination does not read, so every connection is closed under it
    /// (the write fails, the failure is the cancel, the VM runs on). Never once the commit is being
    /// written: from then on the destination may run the VM.
    /// </summary>
    private void AbortIfStuck()
    {
        if (_cancelTaken || _commitStarted || _finished)
        {
            return;
        }
        _linksAborted = true;
        Abort(_stream);
        if (_channels is { } channels)
        {
            foreach (PageChannel c in channels.Channels)
            {
                Abort(c.Stream);
            }
        }

        static void Abort(Stream s)
        {
            try
            {
                s.Dispose();
            }
            catch (Exception)
            {
                // Closing under a write may throw here or in the write; the write's failure is what counts.
            }
        }
    }

    private static void FeedAnswer(SourceMigrationMachine m, FrameType type, byte[] payload, TimeSpan now)
    {
        try
        {
            switch (type)
            {
                case FrameType.OfferAccepted:
                {
                    var a = ControlJson.Decode<OfferAccepted>(payload, "offer accepted");
                    m.HandleOfferAccepted(new OfferAcceptance
                    {
                        HostName = a.DestinationHost,
                        Os = a.Os,
                        ProcessorCount = a.ProcessorCount,
                        PageInstall = a.PageInstall,
                        PageInstallReason = a.PageInstallReason,
                        PageConnections = a.PageConnections,
                    }, now);
                    break;
                }
                case FrameType.SwitchoverReady:
                {
                    var r = ControlJson.Decode<SwitchoverReady>(payload, "switchover ready");
                    m.HandleSwitchoverVerdict(new SwitchoverVerdict
                    {
                        DigestMatches = r.DigestMatches,
                        DestinationDigest = r.DestinationDigest,
                        DestinationHashMs = r.DestinationHashMs,
                        Problem = r.Problem,
                    }, now);
                    break;
                }
                case FrameType.Resumed:
                    m.HandleResumed(ControlJson.Decode<Resumed>(payload, "resumed").ResumeMs, now);
                    break;
                case FrameType.PostCopyComplete:
                {
                    var c = ControlJson.Decode<PostCopyComplete>(payload, "post-copy complete");
                    m.HandlePostCopyComplete(new PostCopyVerdict
                    {
                        DigestMatches = c.DigestMatches,
                        DestinationDigest = c.DestinationDigest,
                        Problem = c.Problem,
                        Faults = c.Faults,
                        FaultLatencyP50Ms = c.FaultLatencyP50Ms,
                        FaultLatencyP99Ms = c.FaultLatencyP99Ms,
                        FaultLatencyMaxMs = c.FaultLatencyMaxMs,
                        ResumeMs = c.ResumeMs,
                        DuplicatePages = c.DuplicatePages,
                        ResumeOps = c.ResumeOps,
                        RunOps = c.RunOps,
                        RunMs = c.RunMs,
                        FaultPath = c.FaultPath,
                        ZeroFilledOnFault = c.ZeroFilledOnFault,
                    }, now);
                    break;
                }
                default:
                    m.HandleUnexpectedAnswer(type.ToString(), now);
                    break;
            }
        }
        catch (Protocol.ProtocolException p)
        {
            MigrationFailedException f = ReturnPath.Wrap(p, "during " + m.Phase.ToWire());
            m.HandleLinkBroken(f.Kind, f.Message, now);
        }
    }

    /// <summary>What a failed read or write means: a stall when the transport says the write limit ran out, else what the stream's error says.</summary>
    private MigrationFailedException Classify(Exception error, string context) =>
        _links?.IsStall(error) == true
            ? new MigrationFailedException(MigrationFailure.Timeout,
                $"destination stalled ({context}): the link took no byte for {_options.StallTimeout.TotalSeconds:0.###} s", error)
            : ReturnPath.Wrap(error, context);

    /// <summary>A command failed on this side: usually the link, whose clearer cause the return path may be about to report.</summary>
    private void ReportFailure(SourceMigrationMachine m, Exception ex)
    {
        if (_linksAborted || (ex is OperationCanceledException && _userToken.IsCancellationRequested))
        {
            // The write failed because a cancel closed the connections under it (or the cancel itself interrupted it).
            m.HandleCancel(Now);
            return;
        }
        Exception cause = ex;
        if (ex is IOException or ObjectDisposedException or OperationCanceledException && WaitForLinkError(ReturnPathGrace) is { } rp)
        {
            cause = rp;
        }
        MigrationFailedException f = Classify(cause, "during " + m.Phase.ToWire());
        m.HandleFailure(f.Kind, f.Message, Now);
    }

    /// <summary>The current connection's read error, waiting up to <paramref name="grace"/> for one; other inputs that arrive meanwhile are fed as usual.</summary>
    private Exception? WaitForLinkError(TimeSpan grace)
    {
        TimeSpan until = Now + grace;
        while (_returnPath.Error is null && Now < until)
        {
            if (_inbox.TryTake(out SourceInput input, until - Now))
            {
                if (input.Kind == SourceInputKind.LinkFailed && input.From == _returnPath)
                {
                    return input.Error;
                }
                Feed(_machine!, input);
            }
        }
        return _returnPath.Error;
    }

    // ---- IBatchGate --------------------------------------------------------------------------------

    /// <summary>True while the machine still wants the command in flight.</summary>
    private bool StillCurrent(SourceMigrationMachine m) => m.Outcome is null && m.Phase == _commandPhase;

    bool ISendLoop.StillCurrent => StillCurrent(_machine!);

    bool ISendLoop.Pump()
    {
        DrainInbox(TimeSpan.Zero);
        PublishProgress(force: false);
        return StillCurrent(_machine!);
    }

    bool ISendLoop.WaitUntil(Func<bool> done)
    {
        SourceMigrationMachine m = _machine!;
        while (StillCurrent(m))
        {
            if (done())
            {
                return true;
            }
            DrainInbox(IdleTick);
            PublishProgress(force: false);
        }
        return false;
    }

    public bool BeforeBatch(int frameBytes, bool paced)
    {
        SourceMigrationMachine m = _machine!;
        // With page connections nothing else publishes while a round is being handed out (the workers write): progress froze for whole rounds.
        PublishProgress(force: false);
        if (!paced)
        {
            m.Owe(frameBytes, Now);
            return StillCurrent(m);
        }
        TimeSpan until = Now + m.SendDelay(frameBytes, Now);
        while (StillCurrent(m))
        {
            TimeSpan left = until - Now;
            if (left <= TimerResolution)
            {
                // What is left is paid by the next wait; spinning it out would only take a core from the guest.
                return true;
            }
            DrainInbox(left);
        }
        return false;
    }

    public bool AfterBatch(int pages, int zeroPages, int firstTime, long wireBytes)
    {
        SourceMigrationMachine m = _machine!;
        _observer?.OnBatch(pages, zeroPages, wireBytes);
        m.CountWireBytes(wireBytes);
        m.HandleBatchSent(pages, zeroPages, firstTime, Now);
        DrainInbox(TimeSpan.Zero);
        PublishProgress(force: false);
        return StillCurrent(m);
    }

    // ---- progress ----------------------------------------------------------------------------------

    private void PublishProgress(bool force)
    {
        TimeSpan now = Now;
        SourceMigrationMachine m = _machine!;
        _postCopyPaused = m.Phase == MigrationPhase.PostCopyPaused;
        if (!force && m.Phase == _publishedPhase && now - _lastProgressAt < ProgressInterval)
        {
            return;
        }
        _lastProgressAt = now;
        _publishedPhase = m.Phase;
        var view = new SourceGuestView(
            PopulatedPages: _scanningAll ? _memory.PopulatedCount() : 0,
            GuestWritesPerSecond: _vm.OpsRate(TimeSpan.FromSeconds(1)).OpsPerSecond,
            ScanningAll: _scanningAll,
            ScannedPages: _scanned);
        _progress = _progressBuilder.Snapshot(m, view, now, PageSize.Bytes + PageBatchCodec.EntryHeaderSize);
    }
}
