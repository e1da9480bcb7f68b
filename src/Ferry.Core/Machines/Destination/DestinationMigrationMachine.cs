using System.Globalization;
using Ferry.Core.Migration;

namespace Ferry.Core.Machines.Destination;

/// <summary>The destination's limits and abilities, given once.</summary>
public sealed record DestinationMachineSettings
{
    /// <summary>Largest guest RAM accepted, in bytes.</summary>
    public required long MaxMemoryBytes { get; init; }

    /// <summary>The driver can take a new connection from the source after a post-copy link break (otherwise a break is final).</summary>
    public bool CanRecover { get; init; }

    /// <summary>How long a post-copy whose link broke waits for the source to reconnect (each break).</summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Most page connections this side takes besides the control connection (0: it takes none, every frame comes on the control connection).</summary>
    public int MaxPageConnections { get; init; }

    /// <summary>How long the pages the source says it sent may take to arrive after it said so (a lying or broken source must not hold RAM here).</summary>
    public TimeSpan SettleTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>What the driver found in an offer; the machine decides whether to take it.</summary>
/// <param name="StateMismatch">The source's vCPU state does not have the size this side expects.</param>
/// <param name="ConfigInvalid">The VM the offer describes is not a valid one.</param>
/// <param name="AdmissionRefusal">The host refuses it (e.g. a VM of that id runs here).</param>
/// <param name="InstallRefusal">The page-install backend asked for cannot work on this host.</param>
/// <param name="PageConnections">Page connections the source asks for.</param>
public readonly record struct OfferCheck(long MemoryBytes, int Vcpus, string? StateMismatch = null, string? ConfigInvalid = null,
    string? AdmissionRefusal = null, string? InstallRefusal = null, int PageConnections = 0);

/// <summary>What the source claims at switchover.</summary>
public readonly record struct SwitchoverClaim(ulong Digest, long PagesSent, long GuestPages, int Vcpus);

/// <summary>The frames a destination may see, as far as their order matters.</summary>
public enum DestinationFrame
{
    Offer,
    PageBatch,
    RoundEnd,
    VcpuState,
    DeviceState,
    PendingPages,
    Switchover,
    Commit,
    PostCopyEnd,
    Abort,
    Other,
}

/// <summary>
/// The destination side of one migration, as a state machine with no I/O and no clock (see
/// <see cref="Source.SourceMigrationMachine"/>). It admits the offer, checks that frames come in
/// the order the protocol allows, gives the verdict at switchover and at the end of post-copy,
/// starts the VM only on the source's commit, decides whether a broken post-copy link is worth
/// waiting for and for how long, and says plainly what a failure cost. Receiving into fresh RAM
/// that no VM runs on, nothing before the commit can harm a running VM; after it, a failure
/// stops and discards the VM here (the source keeps its paused copy).
/// </summary>
public sealed class DestinationMigrationMachine
{
    private readonly DestinationMachineSettings _settings;
    private readonly Queue<DestinationCommand> _commands = new();
    private bool[] _haveVcpu = [];
    private bool _haveDevice;
    private int _pendingWords = -1;
    private int _pendingWordsTotal;
    private SwitchoverClaim _claim;
    private long _postCopyPagesSent;
    private ulong _postCopySourceDigest;
    private Deadline _deadline;
    private TimeSpan _deadlineAt;
    private TimeSpan _switchAt;
    private TimeSpan? _runningAt;
    private string _brokenBecause = "";
    private bool _cancelled;

    private enum Deadline
    {
        None,
        PagesSettle,
        SourceReconnect,
    }

    public DestinationMigrationMachine(DestinationMachineSettings settings, TimeSpan now)
    {
        _settings = settings;
        Start = now;
    }

    public TimeSpan Start { get; }

    public DestinationPhase Phase { get; private set; } = DestinationPhase.AwaitingOffer;

    /// <summary>Set when the migration ended: true when the VM runs here and needs nothing more.</summary>
    public bool? Succeeded { get; private set; }

    public MigrationFailure? Failure { get; private set; }

    public string? Error { get; private set; }

    public bool IsFinished => Succeeded is not null && _commands.Count == 0;

    /// <summary>The VM will run here before all its pages arrived (a pending map came before the switchover).</summary>
    public bool IsPostCopy => _pendingWords >= 0;

    public long GuestPages { get; private set; }

    public int Vcpus { get; private set; }

    public int Recoveries { get; private set; }

    /// <summary>Page connections taken (0: every frame on the control connection).</summary>
    public int PageConnections { get; private set; }

    /// <summary>Pages still missing here (post-copy), as the driver last said; for the failure message.</summary>
    public long MissingPages { get; private set; }

    /// <summary>When the switchover frame arrived: the destination's part of the downtime starts.</summary>
    public TimeSpan SwitchAt => _switchAt;

    public TimeSpan? RunningAt => _runningAt;

    public bool TryPoll(TimeSpan now, out DestinationCommand command) => _commands.TryDequeue(out command);

    public TimeSpan? NextTimeout() => _deadline == Deadline.None ? null : _deadlineAt;

    public void HandleTimeout(TimeSpan now)
    {
        if (Succeeded is not null || _deadline == Deadline.None || now < _deadlineAt)
        {
            return;
        }
        Deadline expired = _deadline;
        _deadline = Deadline.None;
        if (expired == Deadline.SourceReconnect)
        {
            Fail(MigrationFailure.PeerDisconnected, string.Create(CultureInfo.InvariantCulture,
                $"link to the source broke ({_brokenBecause}) and the source did not reconnect within {_settings.RecoveryTimeout.TotalSeconds:0.###} s"), now);
            return;
        }
        Fail(MigrationFailure.Timeout, string.Create(CultureInfo.InvariantCulture,
            $"the pages the source said it sent did not all arrive within {_settings.SettleTimeout.TotalSeconds:0.###} s"), now);
    }

    /// <summary>
    /// A frame arrived (its bytes already checked by the reader). False when the protocol does not
    /// allow it here: the migration has then failed, and the driver must not act on it.
    /// </summary>
    public bool HandleFrame(DestinationFrame frame, string frameName, TimeSpan now)
    {
        if (Succeeded is not null)
        {
            return false;
        }
        bool allowed = Phase switch
        {
            DestinationPhase.AwaitingOffer => frame is DestinationFrame.Offer or DestinationFrame.Abort,
            DestinationPhase.Receiving => frame is DestinationFrame.PageBatch or DestinationFrame.RoundEnd or DestinationFrame.VcpuState
                or DestinationFrame.DeviceState or DestinationFrame.PendingPages or DestinationFrame.Switchover or DestinationFrame.Abort,
            DestinationPhase.AwaitingCommit => frame is DestinationFrame.Commit or DestinationFrame.Abort,
            DestinationPhase.PostCopy => frame is DestinationFrame.PageBatch or DestinationFrame.PostCopyEnd or DestinationFrame.Abort,
            _ => false,
        };
        if (allowed)
        {
            return true;
        }
        string message = Phase switch
        {
            DestinationPhase.AwaitingOffer => $"expected Offer, got {frameName}",
            DestinationPhase.AwaitingCommit => $"expected Commit, got {frameName}",
            DestinationPhase.Receiving => $"unexpected {frameName} frame before switchover",
            _ => $"unexpected {frameName} frame during post-copy",
        };
        Fail(MigrationFailure.ProtocolViolation, message, now);
        return false;
    }

    public void HandleOffer(OfferCheck offer, TimeSpan now)
    {
        string? refusal = offer.StateMismatch
            ?? (offer.MemoryBytes > _settings.MaxMemoryBytes
                ? $"VM needs {offer.MemoryBytes} bytes of RAM; this agent accepts at most {_settings.MaxMemoryBytes}"
                : null)
            ?? offer.ConfigInvalid
            ?? offer.AdmissionRefusal;
        if (refusal is not null)
        {
            Refuse("offer refused: " + refusal, refusal, now);
            return;
        }
        if (offer.InstallRefusal is { } install)
        {
            Refuse(install, install, now);
            return;
        }
        GuestPages = offer.MemoryBytes / Paging.PageSize.Bytes;
        Vcpus = offer.Vcpus;
        _haveVcpu = new bool[offer.Vcpus];
        PageConnections = Math.Clamp(offer.PageConnections, 0, _settings.MaxPageConnections);
        Move(DestinationPhase.Receiving);
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.AcceptOffer, Value: PageConnections));
    }

    /// <summary>A round-end marker: every page of the round on that connection is installed, so say so (the source drains on it).</summary>
    public void HandleRoundEnd(int round, TimeSpan now) => _commands.Enqueue(new DestinationCommand(DestinationCommandKind.AckRound, Value: round));

    public void HandleVcpuState(int index, TimeSpan now) => _haveVcpu[index] = true;

    public void HandleDeviceState(TimeSpan now) => _haveDevice = true;

    /// <summary>Post-copy's map of pages still at the source: <paramref name="words"/> of <paramref name="totalWords"/> words have come.</summary>
    public void HandlePendingPages(int words, int totalWords, TimeSpan now)
    {
        _pendingWords = words;
        _pendingWordsTotal = totalWords;
    }

    public void HandleSwitchover(SwitchoverClaim claim, TimeSpan now)
    {
        _switchAt = now;
        _claim = claim;
        Move(DestinationPhase.Switchover);
        Arm(Deadline.PagesSettle, now + _settings.SettleTimeout);
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.AwaitPages, Value: claim.PagesSent));
    }

    /// <summary>After a switchover or post-copy end: <paramref name="received"/> pages arrived in all, <paramref name="missing"/> are still missing, and the page hashes fold into <paramref name="digest"/>.</summary>
    public void HandlePagesSettled(long received, long missing, ulong digest, TimeSpan now)
    {
        if (Succeeded is not null)
        {
            return;
        }
        _deadline = Deadline.None;
        MissingPages = missing;
        if (Phase == DestinationPhase.Switchover)
        {
            string? problem =
                _haveVcpu.Any(x => !x) ? "vCPU state missing" :
                _pendingWords >= 0 && _pendingWords != _pendingWordsTotal ? $"pending pages map covers {_pendingWords} of {_pendingWordsTotal} words" :
                !_haveDevice ? "device state missing" :
                _claim.GuestPages != GuestPages ? $"source counts {_claim.GuestPages} guest pages, destination {GuestPages}" :
                _claim.Vcpus != Vcpus ? $"source says {_claim.Vcpus} vCPUs, the offer said {Vcpus}" :
                _claim.PagesSent != received ? $"source sent {_claim.PagesSent} pages, destination received {received}" :
                digest != _claim.Digest ? "page contents differ" : null;
            var verdict = new DestinationCommand(DestinationCommandKind.SendSwitchoverVerdict, Verdict: new DestinationVerdict(problem is null, digest, problem));
            if (problem is not null)
            {
                Fail(MigrationFailure.DigestMismatch,
                    $"switchover refused: {problem} (source digest {Hex(_claim.Digest)}, destination {Hex(digest)})", now, verdict);
                return;
            }
            _commands.Enqueue(verdict);
            Move(DestinationPhase.AwaitingCommit);
            return;
        }
        if (Phase == DestinationPhase.PostCopyEnd)
        {
            // After a recovery some pages were sent twice (lost in flight, then again), so only a clean run checks the count.
            string? problem =
                missing > 0 ? $"{missing} pages never arrived" :
                Recoveries == 0 && _postCopyPagesSent != received ? $"source sent {_postCopyPagesSent} pages, destination received {received}" :
                digest != _postCopySourceDigest ? "page contents differ" : null;
            var verdict = new DestinationCommand(DestinationCommandKind.SendPostCopyVerdict, Verdict: new DestinationVerdict(problem is null, digest, problem));
            if (problem is not null)
            {
                Fail(MigrationFailure.DigestMismatch,
                    $"post-copy ended with {problem} (source digest {Hex(_postCopySourceDigest)}, destination {Hex(digest)})", now, verdict);
                return;
            }
            _commands.Enqueue(verdict);
            _commands.Enqueue(new DestinationCommand(DestinationCommandKind.EndPostCopy));
            Move(DestinationPhase.Completed);
            Succeeded = true;
        }
    }

    public void HandleCommit(TimeSpan now)
    {
        Move(DestinationPhase.Resuming);
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.StartVm, PostCopy: IsPostCopy));
    }

    public void HandleVmRunning(TimeSpan now)
    {
        if (Succeeded is not null)
        {
            return;
        }
        _runningAt = now;
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.SendResumed, Milliseconds: (now - _switchAt).TotalMilliseconds));
        if (IsPostCopy)
        {
            Move(DestinationPhase.PostCopy);
            return;
        }
        // From here the VM runs here; a lost confirmation does not undo that.
        Move(DestinationPhase.Completed);
        Succeeded = true;
    }

    /// <summary>Post-copy: pages still missing here, after the latest install.</summary>
    public void HandlePostCopyProgress(long missing) => MissingPages = missing;

    public void HandlePostCopyEnd(long pagesSent, ulong sourceDigest, TimeSpan now)
    {
        _postCopyPagesSent = pagesSent;
        _postCopySourceDigest = sourceDigest;
        Move(DestinationPhase.PostCopyEnd);
        Arm(Deadline.PagesSettle, now + _settings.SettleTimeout);
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.AwaitPages, Value: pagesSent, PostCopy: true));
    }

    public void HandleAbort(string reason, TimeSpan now) => Fail(MigrationFailure.Aborted, "source aborted: " + reason, now);

    /// <summary>
    /// The connection to the source failed. During post-copy, when the driver can take a new
    /// connection, no vCPU gave up and nobody cancelled, a disconnect pauses post-copy: the vCPUs on
    /// missing pages wait (their timeouts paused) for the source to come back within
    /// <see cref="DestinationMachineSettings.RecoveryTimeout"/>. Anything else fails.
    /// </summary>
    public void HandleLinkBroken(MigrationFailure kind, string message, TimeSpan now)
    {
        if (Succeeded is not null || Phase == DestinationPhase.PostCopyPaused)
        {
            return;
        }
        if (Phase is DestinationPhase.PostCopy or DestinationPhase.PostCopyEnd && _settings.CanRecover && !_cancelled && kind == MigrationFailure.PeerDisconnected)
        {
            _brokenBecause = message;
            _commands.Clear();
            Move(DestinationPhase.PostCopyPaused);
            Arm(Deadline.SourceReconnect, now + _settings.RecoveryTimeout);
            _commands.Enqueue(new DestinationCommand(DestinationCommandKind.PausePageWaits));
            _commands.Enqueue(new DestinationCommand(DestinationCommandKind.AwaitSource));
            return;
        }
        Fail(kind, message, now);
    }

    /// <summary>The source is back on a new connection: tell it what is missing and go on.</summary>
    public void HandleSourceReconnected(TimeSpan now)
    {
        if (Succeeded is not null || Phase != DestinationPhase.PostCopyPaused)
        {
            return;
        }
        _deadline = Deadline.None;
        Recoveries++;
        Move(DestinationPhase.PostCopy);
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.ResumeOnNewConnection));
    }

    /// <summary>A vCPU gave up on a missing page (its wait ran out, or its request could not be sent): the VM cannot go on.</summary>
    public void HandleVcpuFailure(string reason, bool timedOut, TimeSpan now) =>
        Fail(timedOut ? MigrationFailure.Timeout : MigrationFailure.PeerDisconnected, reason, now);

    public void HandleCancel(TimeSpan now)
    {
        _cancelled = true;
        Fail(MigrationFailure.Cancelled, "cancelled: the agent is shutting down", now);
    }

    private void Refuse(string error, string toldSource, TimeSpan now)
    {
        Finish(MigrationFailure.Refused, error);
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.TellSource, Reason: toldSource));
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.Discard));
    }

    /// <param name="first">A command that must still go out before the failure's own (the verdict that says why).</param>
    private void Fail(MigrationFailure kind, string message, TimeSpan now, DestinationCommand? first = null)
    {
        if (Succeeded is not null)
        {
            return;
        }
        bool ranHere = Phase.VmRunsHere() && _runningAt is not null;
        string error = ranHere
            ? $"post-copy failed after the VM resumed here: {message}. {Lost(now)}"
            : message;
        // The source learns why, so its report names the cause rather than a closed connection (a disconnect it has seen itself; an abort or refusal came from it or was told already).
        bool tell = kind is not (MigrationFailure.PeerDisconnected or MigrationFailure.Aborted or MigrationFailure.Refused);
        Finish(kind, error);
        if (first is { } f)
        {
            _commands.Enqueue(f);
        }
        if (tell)
        {
            _commands.Enqueue(new DestinationCommand(DestinationCommandKind.TellSource, Reason: error));
        }
        _commands.Enqueue(new DestinationCommand(DestinationCommandKind.Discard));
    }

    private void Finish(MigrationFailure kind, string error)
    {
        _commands.Clear();
        _deadline = Deadline.None;
        Move(DestinationPhase.Failed);
        Succeeded = false;
        Failure = kind;
        Error = error;
    }

    /// <summary>What the failure cost, in plain words: the VM ran here ahead of its pages and cannot go on without them.</summary>
    private string Lost(TimeSpan now)
    {
        double ranSeconds = _runningAt is { } at ? (now - at).TotalSeconds : 0;
        long missing = MissingPages;
        return string.Create(CultureInfo.InvariantCulture,
            $"{(missing > 0 ? $"The VM could not be completed: {missing} pages ({missing * 4096 / 1048576.0:0.#} MiB) never arrived from the source" : "The VM could not be completed")}; it ran here for {ranSeconds:0.#} s and is now stopped and discarded (a source that is still up keeps its paused copy)");
    }

    private void Move(DestinationPhase to)
    {
        if (to == Phase)
        {
            return;
        }
        if (!DestinationPhases.IsLegal(Phase, to))
        {
            throw new InvalidOperationException($"illegal destination phase transition {Phase} → {to}");
        }
        Phase = to;
    }

    private void Arm(Deadline what, TimeSpan at)
    {
        _deadline = what;
        _deadlineAt = at;
    }

    private static string Hex(ulong digest) => digest.ToString("x16", CultureInfo.InvariantCulture);
}
