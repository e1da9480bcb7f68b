using Ferry.Core.Machines.Destination;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Destination;

/// <summary>What the destination is willing to accept.</summary>
public sealed record DestinationLimits
{
    /// <summary>Largest guest RAM accepted, in bytes.</summary>
    public long MaxMemoryBytes { get; init; } = VmConfig.MaxMemoryBytes;

    /// <summary>How received pages go into guest RAM.</summary>
    public PageInstallChoice PageInstall { get; init; } = PageInstallChoice.Auto;

    /// <summary>How long a silent source is tolerated between frames.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Post-copy: the longest a vCPU waits for one missing page before the migration fails.</summary>
    public TimeSpan PageWaitTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Post-copy: where to wait for the source to reconnect after the link broke. Null = a broken link ends post-copy at once.</summary>
    public PostCopyRecoveryRegistry? PostCopyRecovery { get; init; }

    /// <summary>
    /// Post-copy: how long to wait for the source to reconnect after the link broke (each break).
    /// Meanwhile vCPUs on missing pages wait without their <see cref="PageWaitTimeout"/> running. An
    /// agent sets its post-copy pause limit here, to match how long a source keeps a paused post-copy.
    /// </summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Where page connections of a migration arrive (the listener hands them over). Null = this side takes none: every frame on the control connection.</summary>
    public PageChannelRegistry? PageChannels { get; init; }
}

/// <summary>
/// The destination side over an authenticated stream: the engine's driver of
/// <see cref="DestinationMigrationMachine"/>. It reads frames, installs pages (the hot loop), and
/// carries out the machine's commands; the machine decides what is allowed and when. It receives
/// into fresh guest RAM that no VM runs on, and builds and starts the VM only on the source's
/// commit. Any failure before that discards everything received; nothing ever touches a running VM.
/// </summary>
public sealed class DestinationMigration
{
    private static readonly TimeSpan RecoverySlice = TimeSpan.FromMilliseconds(100);

    private readonly HostInfo _self;
    private readonly Microsoft.Extensions.Logging.ILogger _logger;
    private readonly DestinationLimits _limits;
    private readonly Func<Offer, string?>? _admit;
    private readonly TimeProvider _time;
    private readonly long _epoch;
    private Stream _stream;
    private FrameReader _reader;
    private readonly FrameWriter _writer;
    private DestinationMigrationMachine? _machine;
    private ReceivedGuest? _guest;
    private PostCopyReceiver? _postCopy;
    private VirtualMachine? _vm;
    private volatile DestinationPhase _phase = DestinationPhase.AwaitingOffer;
    private readonly List<PageChannelReceiver> _receivers = [];
    private readonly SemaphoreSlim _pagesArrived = new(0);
    private int _channelGeneration;
    private volatile Exception? _channelFailure;
    // Pages may be installed from the page connections only while this is 1; _installing counts installs in flight (see ClosePageInstalls).
    private int _pagesOpen;
    private int _installing;

    /// <param name="admit">Returns a refusal reason, or null to accept (e.g. a VM id already present).</param>
    public DestinationMigration(Stream authenticatedStream, HostInfo self, DestinationLimits limits, Func<Offer, string?>? admit = null,
        TimeProvider? timeProvider = null, Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _stream = authenticatedStream;
        _self = self;
        _limits = limits;
        _admit = admit;
        _time = timeProvider ?? TimeProvider.System;
        _epoch = _time.GetTimestamp();
        _reader = new FrameReader(authenticatedStream);
        _writer = new FrameWriter(authenticatedStream);
    }

    /// <summary>The offer, once received (for logs and listings).</summary>
    public Offer? Offer { get; private set; }

    /// <summary>Pages installed so far.</summary>
    public long PagesReceived => _guest?.Received ?? 0;

    /// <summary>What this connection turned out to be when it was not a new migration.</summary>
    public enum Handover
    {
        None,

        /// <summary>A source coming back for a post-copy whose link broke: handed to that migration.</summary>
        PostCopyResume,

        /// <summary>A page connection of a migration under way: handed to it.</summary>
        PageConnection,
    }

    /// <summary>Set when <see cref="RunOrResume"/> returned null: to whom the connection went.</summary>
    public Handover HandedOver { get; private set; }

    /// <summary>True once the VM was started here (a later failure stopped and discarded it).</summary>
    public bool RanVm => _ranVm;

    private volatile bool _ranVm;

    /// <summary>Where the migration is (the listing shows it while receiving: receiving, post-copy, post-copy paused…).</summary>
    public DestinationPhase Phase => _phase;

    private TimeSpan Now => _time.GetElapsedTime(_epoch);

    /// <summary>Timestamp at which the control read now blocking began (0: not reading): the idle watch counts only while this side waits on the source.</summary>
    private long _readingSince;

    /// <summary>Timestamp of the last batch a page connection delivered: pages there mean the source is alive while the control connection is quiet.</summary>
    private long _channelActivity;

    /// <summary>Set by the idle watch when it closed the control connection on a silent source.</summary>
    private volatile bool _idleExpired;

    private ITimer? _idleWatch;

    /// <summary>
    /// The idle watch: the control connection is quiet for a whole round when page connections
    /// carry the pages, so a socket read timeout on it would fail a long round; instead, while this
    /// side waits for a control frame and neither that connection nor any page connection brought
    /// anything for <see cref="DestinationLimits.IdleTimeout"/>, the source is taken to be gone and
    /// the control connection is closed (the read fails and the machine decides what that means).
    /// </summary>
    private void WatchIdle()
    {
        long since = Volatile.Read(ref _readingSince);
        if (since == 0)
        {
            return;
        }
        long last = Math.Max(since, Volatile.Read(ref _channelActivity));
        if (_time.GetElapsedTime(last) > _limits.IdleTimeout)
        {
            _idleExpired = true;
            try
            {
                Volatile.Read(ref _stream).Dispose();
            }
            catch (Exception)
            {
                // Closing under a read: the read's failure is what counts.
            }
        }
    }

    /// <summary>Receives one VM. Returns it running; throws (having kept nothing) on any failure.</summary>
    public VirtualMachine Run(CancellationToken ct) =>
        RunOrResume(ct) ?? throw new MigrationFailedException(MigrationFailure.ProtocolViolation, "the connection resumed a post-copy instead of offering a VM");

    /// <summary>
    /// Like <see cref="Run"/>, but a connection that opens with PostCopyResume is handed to the
    /// paused post-copy it names (<see cref="DestinationLimits.PostCopyRecovery"/>): then this
    /// returns null and the stream belongs to that migration (the caller must not close it).
    /// </summary>
    public VirtualMachine? RunOrResume(CancellationToken ct)
    {
        using var registration = ct.Register(() => Volatile.Read(ref _stream).Dispose());
        SetIdleTimeout(_stream);
        Frame first;
        try
        {
            first = _reader.Read();
        }
        catch (Exception ex) when (ct.IsCancellationRequested)
        {
            throw new OperationCanceledException("cancelled before the first frame", ex, ct);
        }
        if (first.Type == FrameType.PageChannel && _limits.PageChannels is { } channels)
        {
            try
            {
                channels.HandOver(_stream, _reader, first.Payload);
                HandedOver = Handover.PageConnection;
            }
            catch (MigrationFailedException refused)
            {
                TrySend(_writer, FrameType.Abort, ControlJson.Encode(new Abort { Reason = refused.Message }));
                throw;
            }
            return null;
        }
        if (first.Type == FrameType.PostCopyResume && _limits.PostCopyRecovery is { } recovery)
        {
            try
            {
                recovery.HandOver(_stream, _reader, first.Payload);
                HandedOver = Handover.PostCopyResume;
            }
            catch (MigrationFailedException refused)
            {
                // Said plainly, so the source stops retrying a post-copy that no longer exists here.
                TrySend(_writer, FrameType.Abort, ControlJson.Encode(new Abort { Reason = refused.Message }));
                throw;
            }
            return null;
        }
        var m = new DestinationMigrationMachine(new DestinationMachineSettings
        {
            MaxMemoryBytes = _limits.MaxMemoryBytes,
            CanRecover = _limits.PostCopyRecovery is not null,
            RecoveryTimeout = _limits.RecoveryTimeout,
            SettleTimeout = _limits.IdleTimeout,
            MaxPageConnections = _limits.PageChannels is null ? 0 : MigrationOptions.MaxPageConnections,
        }, Now);
        _machine = m;
        // The first frame's read had the socket's own timeout; from here the idle watch takes over.
        if (_stream.CanTimeout)
        {
            _stream.ReadTimeout = Timeout.Infinite;
        }
        TimeSpan watchEvery = _limits.IdleTimeout / 4 < TimeSpan.FromSeconds(1) ? _limits.IdleTimeout / 4 : TimeSpan.FromSeconds(1);
        _idleWatch = _time.CreateTimer(_ => WatchIdle(), null, watchEvery, watchEvery);
        try
        {
            Dispatch(m, first);
            while (!m.IsFinished)
            {
                Drain(m, ct);
                if (m.IsFinished)
                {
                    break;
                }
                if (TryRead(m, ct, out Frame f))
                {
                    Dispatch(m, f);
                }
            }
        }
        catch (Exception ex) when (m.Succeeded is null)
        {
            // A bug on this side: fail through the machine so the VM and RAM are let go.
            _cause ??= ex;
            m.HandleLinkBroken(MigrationFailure.Internal, "internal error: " + ex.Message, Now);
            Drain(m, ct);
        }
        finally
        {
            _idleWatch.Dispose();
            _phase = m.Phase;
            if (_limits.PostCopyRecovery is { } registry && Offer is { } offer)
            {
                registry.Unregister(offer.MigrationId);
            }
            if (_limits.PageChannels is { } pageChannels && Offer is { } o)
            {
                pageChannels.Unregister(o.MigrationId);
            }
            CloseReceivers();
            _postCopy?.Dispose();
        }
        string id = Offer?.MigrationId ?? "?";
        if (m.Succeeded == true)
        {
            Telemetry.EngineLog.IncomingCompleted(_logger, id);
            return _vm!;
        }
        Telemetry.EngineLog.IncomingFailed(_logger, id, m.Failure?.ToString() ?? "", m.Error ?? "");
        if (m.RunningAt is null && _cause is not null)
        {
            // Nothing ran here: the cause itself says best what went wrong (a bad frame, a closed stream).
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_cause);
        }
        throw new MigrationFailedException(m.Failure ?? MigrationFailure.Internal, m.Error ?? "failed", _cause);
    }

    /// <summary>What made the migration fail, when it was an exception here (a bad frame, a broken stream).</summary>
    private Exception? _cause;

    /// <summary>The next frame; false (having told the machine why) when reading failed.</summary>
    private bool TryRead(DestinationMigrationMachine m, CancellationToken ct, out Frame frame)
    {
        try
        {
            Volatile.Write(ref _readingSince, _time.GetTimestamp());
            frame = _reader.Read();
            return true;
        }
        catch (Exception ex)
        {
            frame = default;
            if (_idleExpired)
            {
                ex = new MigrationFailedException(MigrationFailure.Timeout,
                    $"the source sent nothing for {_limits.IdleTimeout.TotalSeconds:0.###} s (stalled or gone)", ex);
                _idleExpired = false;
            }
            _cause ??= ex;
            if (ct.IsCancellationRequested)
            {
                m.HandleCancel(Now);
            }
            else if (_channelFailure is { } channelFailure)
            {
                _cause = channelFailure;
                var (kind, message) = Classify(channelFailure);
                m.HandleLinkBroken(kind, "page connection: " + message, Now);
            }
            else if (_postCopy?.Pages.Failure is { } vcpuReason)
            {
                // A vCPU's own reason (a page wait that timed out) explains the closed stream better than the read error does.
                m.HandlePostCopyProgress(_postCopy.Pages.Missing);
                m.HandleVcpuFailure(vcpuReason, _postCopy.Pages.FailedByTimeout, Now);
            }
            else
            {
                if (_postCopy is not null)
                {
                    m.HandlePostCopyProgress(_postCopy.Pages.Missing);
                }
                var (kind, message) = Classify(ex);
                m.HandleLinkBroken(kind, message, Now);
                if (m.Phase == DestinationPhase.PostCopyPaused)
                {
                    // Recoverable: the broken link is not the migration's cause.
                    _cause = null;
                }
            }
            _phase = m.Phase;
            return false;
        }
        finally
        {
            Volatile.Write(ref _readingSince, 0);
        }
    }

    private static (MigrationFailure, string) Classify(Exception ex) => ex switch
    {
        MigrationFailedException mf => (mf.Kind, mf.Message),
        ProtocolException { Kind: ProtocolErrorKind.Truncated } p => (MigrationFailure.PeerDisconnected, p.Message),
        ProtocolException p => (MigrationFailure.ProtocolViolation, p.Message),
        IOException io => (MigrationFailure.PeerDisconnected, "connection lost: " + (io.InnerException?.Message ?? io.Message)),
        ObjectDisposedException => (MigrationFailure.PeerDisconnected, "connection closed"),
        _ => (MigrationFailure.Internal, ex.Message),
    };

    private static DestinationFrame Kind(FrameType type) => type switch
    {
        FrameType.Offer => DestinationFrame.Offer,
        FrameType.PageBatch => DestinationFrame.PageBatch,
        FrameType.RoundEnd => DestinationFrame.RoundEnd,
        FrameType.VcpuState => DestinationFrame.VcpuState,
        FrameType.DeviceState => DestinationFrame.DeviceState,
        FrameType.PendingPages => DestinationFrame.PendingPages,
        FrameType.Switchover => DestinationFrame.Switchover,
        FrameType.Commit => DestinationFrame.Commit,
        FrameType.PostCopyEnd => DestinationFrame.PostCopyEnd,
        FrameType.Abort => DestinationFrame.Abort,
        _ => DestinationFrame.Other,
    };

    /// <summary>One frame: the machine says whether it may come now; decoding errors fail the migration like a broken link.</summary>
    private void Dispatch(DestinationMigrationMachine m, in Frame f)
    {
        if (!m.HandleFrame(Kind(f.Type), f.Type.ToString(), Now))
        {
            _cause ??= new ProtocolException(ProtocolErrorKind.UnexpectedFrame, m.Error ?? $"unexpected {f.Type} frame");
            return;
        }
        try
        {
            switch (f.Type)
            {
                case FrameType.Offer:
                    ReadOffer(m, f.Payload);
                    break;
                case FrameType.PageBatch:
                    if (_postCopy is { } pc)
                    {
                        pc.Install(f.Payload);
                        m.HandlePostCopyProgress(pc.Pages.Missing);
                    }
                    else
                    {
                        _guest!.InstallBatch(f.Payload);
                    }
                    break;
                case FrameType.RoundEnd:
                    m.HandleRoundEnd(RoundEnd.Read(f.Payload).Round, Now);
                    break;
                case FrameType.VcpuState:
                    _guest!.SetVcpu(f.Payload);
                    m.HandleVcpuState(_guest.LastVcpu, Now);
                    break;
                case FrameType.DeviceState:
                    ControlJson.Decode<DeviceState>(f.Payload, "device state");
                    m.HandleDeviceState(Now);
                    break;
                case FrameType.PendingPages:
                    m.HandlePendingPages(_guest!.AddPendingWords(f.Payload), _guest.Pending!.WordCount, Now);
                    break;
                case FrameType.Switchover:
                {
                    Switchover sw = Switchover.Read(f.Payload);
                    m.HandleSwitchover(new SwitchoverClaim(sw.Digest, sw.PagesSent, sw.GuestPages, sw.Vcpus), Now);
                    break;
                }
                case FrameType.Commit:
                    m.HandleCommit(Now);
                    break;
                case FrameType.PostCopyEnd:
                {
                    PostCopyEnd end = PostCopyEnd.Read(f.Payload);
                    m.HandlePostCopyEnd(end.PagesSent, end.Digest, Now);
                    break;
                }
                case FrameType.Abort:
                    m.HandleAbort(ControlJson.Decode<Abort>(f.Payload, "abort").Reason, Now);
                    break;
            }
        }
        catch (ProtocolException p)
        {
            _cause ??= p;
            m.HandleLinkBroken(MigrationFailure.ProtocolViolation, p.Message, Now);
        }
        _phase = m.Phase;
    }

    private void ReadOffer(DestinationMigrationMachine m, ReadOnlySpan<byte> payload)
    {
        Offer offer = ControlJson.Decode<Offer>(payload, "offer");
        Offer = offer;
        VmConfig config = ConfigFrom(offer);
        string? stateMismatch = offer.VcpuStateBytes != VcpuState.SizeInBytes
            ? $"source vCPU state is {offer.VcpuStateBytes} bytes; this agent expects {VcpuState.SizeInBytes}"
            : null;
        string? invalid = ConfigProblem(config);
        string? admission = stateMismatch is null && invalid is null ? _admit?.Invoke(offer) : null;
        string? install = null;
        PageInstallDecision? decision = null;
        if (stateMismatch is null && invalid is null && admission is null)
        {
            try
            {
                decision = PageInstallDecision.ForThisHost(_limits.PageInstall);
            }
            catch (PlatformNotSupportedException ex)
            {
                install = ex.Message;
            }
        }
        _pendingConfig = (config, decision);
        m.HandleOffer(new OfferCheck(offer.MemoryBytes, offer.Vcpus, stateMismatch, invalid, admission, install, offer.PageConnections), Now);
    }

    private (VmConfig Config, PageInstallDecision? Install) _pendingConfig;

    // ---- commands --------------------------------------------------------------------------------

    private void Drain(DestinationMigrationMachine m, CancellationToken ct)
    {
        while (m.TryPoll(Now, out DestinationCommand c))
        {
            try
            {
                Execute(m, c, ct);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or ProtocolException)
            {
                _cause ??= ex;
                var (kind, message) = Classify(ex);
                m.HandleLinkBroken(kind, message, Now);
            }
            _phase = m.Phase;
        }
    }

    private void Execute(DestinationMigrationMachine m, DestinationCommand c, CancellationToken ct)
    {
        switch (c.Kind)
        {
            case DestinationCommandKind.AcceptOffer:
            {
                var (config, maybeInstall) = _pendingConfig;
                PageInstallDecision install = maybeInstall!.Value;
                var memory = new GuestMemory(config.MemoryBytes);
                if (install.IsUffd)
                {
                    memory.EnableFastInstall();
                }
                _guest = new ReceivedGuest(config, memory, _time);
                int pageConnections = (int)c.Value;
                if (pageConnections > 0)
                {
                    // Ready before the source hears yes, so its page connections cannot arrive to nobody.
                    Volatile.Write(ref _pagesOpen, 1);
                    _limits.PageChannels!.Register(Offer!.MigrationId, pageConnections, JoinPageChannel);
                }
                _writer.Write(FrameType.OfferAccepted, ControlJson.Encode(new OfferAccepted
                {
                    DestinationHost = _self.HostName,
                    Os = _self.Os,
                    ProcessorCount = _self.ProcessorCount,
                    PageInstall = install.Backend,
                    PageInstallReason = install.Reason,
                    PageConnections = pageConnections,
                }));
                _writer.Flush();
                Telemetry.EngineLog.Receiving(_logger, Offer!.MigrationId, config.Id, config.MemoryBytes, pageConnections);
                break;
            }
            case DestinationCommandKind.TellSource:
                (_postCopy is { } pc ? (Action<FrameType, byte[]>)pc.Send : (t, p) => TrySend(_writer, t, p))
                    (FrameType.Abort, ControlJson.Encode(new Abort { Reason = c.Reason ?? "" }));
                break;
            case DestinationCommandKind.AckRound:
            {
                Span<byte> ack = stackalloc byte[RoundEnd.Size];
                new RoundEnd((int)c.Value, 0).Write(ack);
                _writer.Write(FrameType.RoundAck, ack);
                _writer.Flush();
                break;
            }
            case DestinationCommandKind.AwaitPages:
                AwaitPages(m, c.Value, c.PostCopy);
                break;
            case DestinationCommandKind.SendSwitchoverVerdict:
                Telemetry.EngineLog.Verdict(_logger, Offer!.MigrationId, c.Verdict.DigestMatches ? "digests match" : "refused: " + c.Verdict.Problem);
                _writer.Write(FrameType.SwitchoverReady, ControlJson.Encode(new SwitchoverReady
                {
                    DigestMatches = c.Verdict.DigestMatches,
                    DestinationDigest = MemoryDigest.Format(c.Verdict.Digest),
                    DestinationHashMs = _guest!.HashMs,
                    Problem = c.Verdict.Problem,
                }));
                _writer.Flush();
                break;
            case DestinationCommandKind.StartVm:
                StartVm(m, c.PostCopy);
                break;
            case DestinationCommandKind.SendResumed:
            {
                byte[] resumed = ControlJson.Encode(new Resumed { ResumeMs = c.Milliseconds });
                if (_postCopy is { } p)
                {
                    p.Send(FrameType.Resumed, resumed);
                }
                else
                {
                    TrySend(_writer, FrameType.Resumed, resumed);
                }
                break;
            }
            case DestinationCommandKind.SendPostCopyVerdict:
                if (Telemetry.MigrationTelemetry.Enabled)
                {
                    foreach (double ms in _postCopy!.Pages.Latencies.SamplesMs())
                    {
                        Telemetry.MigrationTelemetry.FaultLatency.Record(ms);
                    }
                }
                _postCopy!.Send(FrameType.PostCopyComplete, ControlJson.Encode(_postCopy.Verdict(c.Verdict.DigestMatches,
                    MemoryDigest.Format(c.Verdict.Digest), c.Verdict.Problem)));
                break;
            case DestinationCommandKind.EndPostCopy:
                _postCopy!.Vm!.Memory.EndPostCopy();
                _vm = _postCopy.Vm;
                break;
            case DestinationCommandKind.PausePageWaits:
                Telemetry.EngineLog.Paused(_logger, Offer!.MigrationId);
                // No page can arrive until the source is back: waiting vCPUs keep waiting, bounded by the recovery deadline instead of their page timeout.
                _stream.Dispose();
                _postCopy!.Pages.PauseWaitDeadlines();
                break;
            case DestinationCommandKind.AwaitSource:
                AwaitSource(m, ct);
                break;
            case DestinationCommandKind.ResumeOnNewConnection:
                Telemetry.EngineLog.SourceBack(_logger, Offer!.MigrationId);
                _postCopy!.Resume(_stream);
                _postCopy.Pages.ResumeWaitDeadlines();
                break;
            case DestinationCommandKind.Discard:
                Discard(m);
                break;
        }
    }

    private void StartVm(DestinationMigrationMachine m, bool postCopy)
    {
        ReceivedGuest guest = _guest!;
        if (postCopy)
        {
            var pc = new PostCopyReceiver(guest, _stream, _writer, _limits.PageWaitTimeout, _limits.PostCopyRecovery is not null,
                // A vCPU gave up on a page: closing the stream ends the read, which reports the vCPU's reason.
                () => Volatile.Read(ref _stream).Dispose());
            _postCopy = pc;
            // A newer connection from the source supersedes the current one, which may be half-open (still "up" here though the source gave up on it).
            _limits.PostCopyRecovery?.Register(Offer!.MigrationId, () => Volatile.Read(ref _stream).Dispose());
            pc.Start(_time);
            _ranVm = true;
            Telemetry.EngineLog.Running(_logger, Offer!.MigrationId, guest.Config.Id, $" by post-copy: {pc.Pages.Missing} pages still at the source");
            // Pushed pages may come on the page connections again (the source pushes only once it hears the VM runs).
            Volatile.Write(ref _pagesOpen, _receivers.Count > 0 || m.PageConnections > 0 ? 1 : 0);
            m.HandlePostCopyProgress(pc.Pages.Missing);
            m.HandleVmRunning(Now);
            return;
        }
        // Never-written pages must fault in as zeros again once guest code runs.
        guest.Memory.DisableFastInstall();
        _vm = VirtualMachine.Restore(guest.Config, guest.HandOver(), guest.Vcpus);
        _vm.Start();
        _ranVm = true;
        Telemetry.EngineLog.Running(_logger, Offer!.MigrationId, guest.Config.Id, "");
        m.HandleVmRunning(Now);
    }

    /// <summary>Post-copy paused: waits (in slices, so a vCPU that gave up or a cancel ends it at once) for the source's new connection.</summary>
    private void AwaitSource(DestinationMigrationMachine m, CancellationToken ct)
    {
        PostCopyRecoveryRegistry registry = _limits.PostCopyRecovery!;
        while (m.Phase == DestinationPhase.PostCopyPaused && m.Succeeded is null)
        {
            if (registry.TryTake(Offer!.MigrationId, RecoverySlice, out Stream stream, out FrameReader reader))
            {
                // Watched by the idle watch, like the first connection.
                if (stream.CanTimeout)
                {
                    stream.ReadTimeout = Timeout.Infinite;
                }
                Volatile.Write(ref _stream, stream);
                _reader = reader;
                m.HandleSourceReconnected(Now);
                return;
            }
            if (_postCopy!.Pages.Failure is { } reason)
            {
                m.HandleVcpuFailure(reason, _postCopy.Pages.FailedByTimeout, Now);
                return;
            }
            if (ct.IsCancellationRequested)
            {
                m.HandleCancel(Now);
                return;
            }
            m.HandleTimeout(Now);
        }
    }

    /// <summary>
    /// Waits until the pages the source says it sent have arrived — on one connection they have by
    /// the time its frame is read; on several, other connections may still be installing — then
    /// stops installs from the page connections (so nothing lands after the digest is taken) and
    /// reports. A failed page connection, a cancel or the machine's deadline ends the wait.
    /// </summary>
    private void AwaitPages(DestinationMigrationMachine m, long pagesSent, bool postCopy)
    {
        ReceivedGuest guest = _guest!;
        bool Settled() => postCopy
            ? _postCopy!.Pages.Missing == 0 && (m.Recoveries > 0 || guest.Received >= pagesSent)
            : guest.Received >= pagesSent;
        while (m.PageConnections > 0 && !Settled() && m.Succeeded is null)
        {
            if (_channelFailure is { } failure)
            {
                _cause ??= failure;
                var (kind, message) = Classify(failure);
                m.HandleLinkBroken(kind, "page connection: " + message, Now);
                return;
            }
            _pagesArrived.Wait(TimeSpan.FromMilliseconds(50));
            m.HandleTimeout(Now);
        }
        if (m.Succeeded is not null)
        {
            return;
        }
        ClosePageInstalls();
        m.HandlePagesSettled(guest.Received, _postCopy?.Pages.Missing ?? 0, guest.Digest.Compute(), Now);
    }

    /// <summary>
    /// No page connection installs anything from now on, and none is installing: a page that
    /// arrives after the digest was taken is refused instead of landing on verified memory.
    /// (Dekker-style: both the flag and the in-flight count are written with full fences.)
    /// </summary>
    /// <returns>True when no install is in flight; false if one was still running when the wait ran out.</returns>
    private bool ClosePageInstalls()
    {
        Interlocked.Exchange(ref _pagesOpen, 0);
        var spin = new SpinWait();
        for (int i = 0; Volatile.Read(ref _installing) != 0 && i < 100_000; i++)
        {
            spin.SpinOnce();
        }
        return Volatile.Read(ref _installing) == 0;
    }

    /// <summary>A page connection's batch: installed if pages may come now (before the switch, or pushed during post-copy).</summary>
    private bool InstallFromChannel(ReadOnlySpan<byte> payload, Vm.Memory.PageInstaller installer)
    {
        Volatile.Write(ref _channelActivity, _time.GetTimestamp());
        Interlocked.Increment(ref _installing);
        try
        {
            if (Volatile.Read(ref _pagesOpen) == 0)
            {
                return false;
            }
            if (_postCopy is { } pc)
            {
                pc.Install(payload);
            }
            else
            {
                _guest!.InstallBatch(payload, installer);
            }
            return true;
        }
        finally
        {
            Interlocked.Decrement(ref _installing);
            _pagesArrived.Release();
        }
    }

    /// <summary>A page connection arrived for this migration (on the listener's thread): a receiver takes it.</summary>
    private bool JoinPageChannel(Protocol.Messages.PageChannelHello hello, Stream stream, FrameReader reader)
    {
        lock (_receivers)
        {
            if (hello.Generation < _channelGeneration || _guest is null)
            {
                return false;
            }
            _channelGeneration = hello.Generation;
            // No read timeout: a page connection may carry nothing for a while (its chunks were not dirtied); the control connection's idle watch covers the migration.
            if (stream.CanTimeout)
            {
                stream.ReadTimeout = Timeout.Infinite;
            }
            var receiver = new PageChannelReceiver(hello.Channel, hello.Generation, stream, reader, _guest.Memory, InstallFromChannel, ChannelEnded);
            _receivers.Add(receiver);
            receiver.Start();
            return true;
        }
    }

    /// <summary>
    /// A page connection ended. Closed by the source at the end or for a new generation, that is
    /// nothing; a failure is recorded for the wait on pages, and (when the migration is not already
    /// over) the control connection is closed so the read there notices at once.
    /// </summary>
    private void ChannelEnded(PageChannelReceiver receiver)
    {
        _pagesArrived.Release();
        if (receiver.Failure is not { } failure || receiver.Generation < Volatile.Read(ref _channelGeneration))
        {
            return;
        }
        if (failure is ProtocolException { Kind: ProtocolErrorKind.Truncated } or IOException or ObjectDisposedException)
        {
            // The source closed it (or the link broke): the control connection says which, and why.
            return;
        }
        _channelFailure ??= failure;
        Volatile.Read(ref _stream).Dispose();
    }

    private void CloseReceivers()
    {
        PageChannelReceiver[] all;
        lock (_receivers)
        {
            all = [.. _receivers];
            _receivers.Clear();
            _channelGeneration = int.MaxValue;
        }
        foreach (PageChannelReceiver r in all)
        {
            r.Dispose();
        }
    }

    private void Discard(DestinationMigrationMachine m)
    {
        // Page connections may still be installing into this RAM: stop them before it is freed (a
        // batch landing on unmapped memory crashed the whole process, found by CI). If one will not
        // stop in time the RAM is leaked, not freed under it.
        bool quiet = ClosePageInstalls();
        CloseReceivers();
        if (!quiet)
        {
            Telemetry.EngineLog.IncomingFailed(_logger, Offer?.MigrationId ?? "?", "internal", "a page connection would not stop installing; its guest RAM is kept, not freed");
            return;
        }
        if (_postCopy is { } pc)
        {
            pc.Discard(m.Error ?? "failed");
            _guest?.Dispose();
        }
        else if (_vm is null)
        {
            _guest?.Dispose();
        }
    }

    private void SetIdleTimeout(Stream stream)
    {
        if (stream.CanTimeout)
        {
            // A source that goes silent without closing must not hold guest RAM here forever.
            stream.ReadTimeout = (int)Math.Min(int.MaxValue, _limits.IdleTimeout.TotalMilliseconds);
        }
    }

    internal static void TrySend(FrameWriter writer, FrameType type, byte[] payload)
    {
        try
        {
            writer.Write(type, payload);
            writer.Flush();
        }
        catch (IOException)
        {
            // The peer is gone; what we would have told it no longer matters to it.
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private static VmConfig ConfigFrom(Offer offer) => new()
    {
        Id = offer.VmId,
        Name = offer.VmName,
        MemoryBytes = offer.MemoryBytes,
        Vcpus = offer.Vcpus,
        Workload = offer.Workload,
        OpsLimitPerVcpu = offer.OpsLimitPerVcpu,
    };

    /// <summary>What is wrong with the VM the offer describes, or null (the limits are the machine's to apply).</summary>
    private static string? ConfigProblem(VmConfig config)
    {
        try
        {
            config.Validate();
            return null;
        }
        catch (ArgumentException ex)
        {
            return "invalid VM description: " + ex.Message;
        }
    }
}
