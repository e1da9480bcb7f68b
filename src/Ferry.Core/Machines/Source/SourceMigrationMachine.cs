using System.Globalization;
using Ferry.Core.Migration;
using Ferry.Core.Pacing;
using Ferry.Core.Policy;
using Ferry.Core.Reporting;

namespace Ferry.Core.Machines.Source;

/// <summary>
/// The source side of one migration, as a state machine with no I/O and no clock of its own (the
/// sans-I/O shape of quinn-proto's <c>Connection</c>): the driver passes the time into every call,
/// feeds what happened through the <c>Handle*</c> methods, takes what to do next from
/// <see cref="TryPoll"/>, and calls <see cref="HandleTimeout"/> at <see cref="NextTimeout"/>. The
/// engine drives it with sockets, guest memory and the wall clock; the simulator with a link
/// model and a virtual clock. Every decision of a migration is here: the technique's sequence,
/// the policy after each round, the drain before the pause, the commit point, post-copy's
/// demand/push share and pacing, reconnecting with backoff and pause limits, every wait's
/// deadline, and what a failure leaves behind (before the commit the source VM runs on; after it,
/// never).
/// </summary>
public sealed class SourceMigrationMachine
{
    /// <summary>Pages per pushed post-copy batch (see <see cref="PostCopyScheduler"/>).</summary>
    public const int PushBatchPages = PostCopyScheduler.PushBatchPages;

    private readonly SourceMachineSettings _settings;
    private readonly MigrationOptions _options;
    private readonly IMigrationPolicy _policy;
    private readonly Queue<SourceCommand> _commands = new();
    private readonly RoundLog _rounds = new();
    private readonly SourcePacer _pacer = new();
    private readonly PostCopyScheduler _postCopy = new();
    private readonly PostCopyRecovery _recovery;
    private Awaiting _awaiting;
    private Deadline _deadline;
    private TimeSpan _deadlineAt;
    private TimeSpan? _wakeAt;
    private bool _endsInPostCopy;
    private bool _cancelRequested;
    private int _lastAckedRound;

    /// <summary>When the migration last moved (a frame written, an answer, a step done): the stall watch counts from here.</summary>
    private TimeSpan _movedAt;

    /// <summary>The result event the machine waits for; every other completion is a driver bug, every other answer a protocol violation.</summary>
    private enum Awaiting
    {
        None,
        OfferAcceptance,
        PageConnections,
        PagesSent,
        Harvest,
        RoundAck,
        Paused,
        FinalDirtyPages,
        PostCopyPages,
        StateSent,
        PendingMapSent,
        SwitchoverSent,
        SwitchoverVerdict,
        CommitSent,
        Resumed,
        LinkSample,
        DemandAnswered,
        Pushed,
        PostCopyEndSent,
        PostCopyComplete,
        Reconnect,
        ReconnectWait,
        SourceCopyVerified,
    }

    /// <summary>What expires at <see cref="_deadlineAt"/>.</summary>
    private enum Deadline
    {
        None,
        OfferAcceptance,
        RoundDrain,
        SwitchoverVerdict,
        ResumeConfirmation,
        PostCopyCompletion,
    }

    public SourceMigrationMachine(SourceMachineSettings settings, TimeSpan now)
    {
        settings.Options.Validate();
        _settings = settings;
        _options = settings.Options;
        _policy = _options.CreatePolicy();
        _recovery = new PostCopyRecovery(_options);
        Timeline = new SourceTimeline { Start = now };
        Phase = MigrationPhase.Setup;
        Enqueue(new SourceCommand(SourceCommandKind.SendOffer));
        _awaiting = Awaiting.OfferAcceptance;
        Arm(Deadline.OfferAcceptance, now + settings.OfferTimeout);
        _movedAt = now;
    }

    public SourceMachineSettings Settings => _settings;

    /// <summary>Told of every phase change, old and new (for logs, traces and tests); must not call back into the machine.</summary>
    public Action<MigrationPhase, MigrationPhase>? PhaseChanged { get; set; }

    public MigrationPhase Phase { get; private set; }

    /// <summary>Set once the migration has ended (its phase is final); the driver still runs the commands queued for the way out.</summary>
    public MigrationOutcome? Outcome { get; private set; }

    public MigrationFailure? Failure { get; private set; }

    /// <summary>Why it failed, in one line for people; null when it completed.</summary>
    public string? Error { get; private set; }

    /// <summary>True once the outcome is known and nothing is left to do or to wait for.</summary>
    public bool IsFinished => Outcome is not null && _commands.Count == 0 && _awaiting == Awaiting.None;

    /// <summary>Why the live rounds stopped (or why the migration started paused).</summary>
    public string? StopReason { get; private set; }

    public SourceTimeline Timeline { get; }

    public SourceCounters Counters { get; } = new();

    public IReadOnlyList<RoundRecord> Rounds => _rounds.Records;

    public OfferAcceptance? Acceptance { get; private set; }

    public SwitchoverVerdict? SwitchoverVerdict { get; private set; }

    public PostCopyVerdict? PostCopyVerdict { get; private set; }

    /// <summary>The destination's own measure of its part of the switchover (switchover received → VM running).</summary>
    public double DestinationResumeMs { get; private set; }

    public ulong SourceDigest { get; private set; }

    public double DigestInDowntimeMs { get; private set; }

    public bool? SourceRehashMatches { get; private set; }

    public double SourceRehashMs { get; private set; }

    /// <summary>True once the VM resumed at the destination before all its pages arrived.</summary>
    public bool PostCopyUsed { get; private set; }

    /// <summary>Pre-copy rounds before a post-copy switch.</summary>
    public int PreCopyRounds { get; private set; }

    /// <summary>PostCopyEnd went out: from then on the destination may have finished and only its verdict was lost.</summary>
    public bool PostCopyEndSent { get; private set; }

    /// <summary>The commit frame was written: the destination may run the VM.</summary>
    public bool Committed { get; private set; }

    /// <summary>The current round (0 before the first).</summary>
    public int Round => _rounds.Round;

    /// <summary>Pages the current round has to send, and how many it has sent.</summary>
    public long RoundPages => _rounds.RoundPages;
    public long RoundSent => _rounds.RoundSent;
    public TimeSpan RoundStart => _rounds.RoundStart;
    public long RoundWireStart => _rounds.RoundWireStart;
    public RoundKind RoundKind => _rounds.Kind;
    public double LastDirtyRate => _rounds.LastDirtyRate;
    public double LastBandwidth => _rounds.LastBandwidth;
    public double? LastShrink => _rounds.LastShrink;

    public long PostCopyPending => _postCopy.PendingAtSwitchover;
    public long PostCopyRemaining => _postCopy.Remaining;
    public long DemandPages => _postCopy.DemandPages;
    public long PushPages => _postCopy.PushPages;
    public long PrePagedPages => _postCopy.PrePagedPages;
    public long RequestsAlreadySent => _postCopy.RequestsAlreadySent;
    public double AutoPacedBytesPerSecond => _postCopy.AutoPacedBytesPerSecond;
    public double MeasuredLinkBytesPerSecond => _postCopy.MeasuredLinkBytesPerSecond;

    /// <summary>Page requests that arrived and are not answered yet.</summary>
    public int RequestsWaiting => _postCopy.RequestsWaiting;

    public int Recoveries => _recovery.Recoveries;
    public long PagesSentAgain => _recovery.PagesLost;
    public TimeSpan PausedTotal => _recovery.PausedTotal;

    /// <summary>Post-copy paused and the automatic window spent: only a resume request (or a cancel) moves it on.</summary>
    public bool AwaitingResume => Phase == MigrationPhase.PostCopyPaused && _recovery.AwaitingResume;

    /// <summary>What a paused phase waits for, in words (null when not paused).</summary>
    public string? PauseDetail(TimeSpan now) => Phase == MigrationPhase.PostCopyPaused ? _recovery.Detail(now) : null;

    /// <summary>Never-written pages the destination makes zero locally (post-copy): never sent.</summary>
    public long ZeroFilledLocally { get; private set; }

    // ---- poll ------------------------------------------------------------------------------

    /// <summary>The next command, or false when the machine waits for an event or for <see cref="NextTimeout"/>.</summary>
    public bool TryPoll(TimeSpan now, out SourceCommand command)
    {
        if (_commands.Count == 0 && _awaiting == Awaiting.None && Outcome is null && Phase == MigrationPhase.PostCopy)
        {
            SchedulePostCopy(now);
        }
        return _commands.TryDequeue(out command);
    }

    /// <summary>When <see cref="HandleTimeout"/> is due: a deadline, a backoff or a pacing wait (null: only events move the machine).</summary>
    public TimeSpan? NextTimeout()
    {
        TimeSpan? at = _deadline != Deadline.None ? _deadlineAt : null;
        if (_wakeAt is { } wake && (at is null || wake < at))
        {
            at = wake;
        }
        if (StallWatched && (at is null || StallAt < at))
        {
            at = StallAt;
        }
        return at;
    }

    /// <summary>
    /// From the accepted offer to the destination's resume confirmation every wait is on the
    /// destination, so a migration in which nothing moved for <see cref="MigrationOptions.StallTimeout"/>
    /// has a frozen or unreachable peer (a SIGSTOPped destination kept the source VM paused for
    /// minutes before this watch). Before that the offer has its own deadline; after it the rules
    /// of post-copy recovery apply.
    /// </summary>
    private bool StallWatched => Outcome is null && Acceptance is not null && Phase is MigrationPhase.Setup or MigrationPhase.PreCopy
        or MigrationPhase.Draining or MigrationPhase.Pausing or MigrationPhase.StopAndCopy or MigrationPhase.State
        or MigrationPhase.Switchover or MigrationPhase.Commit;

    private TimeSpan StallAt => _movedAt + _options.StallTimeout;

    /// <summary>Something moved: a frame went out, an answer came, a step finished.</summary>
    private void Moved(TimeSpan now)
    {
        if (now > _movedAt)
        {
            _movedAt = now;
        }
    }

    /// <summary>How long the driver waits before writing <paramref name="bytes"/> of a paced frame (the bandwidth limit; zero when there is none).</summary>
    public TimeSpan SendDelay(int bytes, TimeSpan now)
    {
        TimeSpan delay = _pacer.Take(bytes, now);
        // A wait the bandwidth limit imposes is not a stall.
        Moved(now + delay);
        return delay;
    }

    /// <summary>Post-copy answers and pushes take their bandwidth without waiting; the next push waits the debt out.</summary>
    public void Owe(int bytes, TimeSpan now) => _pacer.Take(bytes, now);

    /// <summary>A frame went out smaller than the bandwidth taken for it (zero pages): the difference is given back.</summary>
    public void Refund(int bytes, TimeSpan now)
    {
        if (bytes > 0)
        {
            _pacer.Take(-bytes, now);
        }
    }

    /// <summary>Counts a frame the driver wrote, header included (pages, markers, control).</summary>
    public void CountWireBytes(long bytes) => Counters.WireBytes += bytes;

    // ---- events: timers, the user, the link ----------------------------------------------------

    public void HandleTimeout(TimeSpan now)
    {
        if (Outcome is not null)
        {
            return;
        }
        if (_wakeAt is { } wake && now >= wake)
        {
            _wakeAt = null;
            if (_awaiting == Awaiting.ReconnectWait)
            {
                _awaiting = Awaiting.None;
                NextRecoveryStep(now);
                return;
            }
        }
        if (StallWatched && now >= StallAt)
        {
            Fail(MigrationFailure.Timeout, StallMessage, now);
            return;
        }
        if (_deadline == Deadline.None || now < _deadlineAt)
        {
            return;
        }
        Deadline expired = _deadline;
        Disarm();
        string message = expired switch
        {
            Deadline.OfferAcceptance => $"destination sent no offer acceptance within {Seconds(_settings.OfferTimeout)} s",
            Deadline.RoundDrain => $"destination did not confirm round {_rounds.Round} within {Seconds(_options.SwitchoverTimeout)} s",
            Deadline.SwitchoverVerdict => $"destination sent no switchover verdict within {Seconds(_options.SwitchoverTimeout)} s",
            Deadline.ResumeConfirmation => $"destination sent no resume confirmation within {Seconds(_options.SwitchoverTimeout)} s",
            _ => $"destination sent no post-copy completion within {Seconds(_options.PostCopyCompletionTimeout)} s",
        };
        Fail(MigrationFailure.Timeout, message, now);
    }

    /// <summary>
    /// A cancel from the user. Before the commit point it ends the migration (the source VM runs on);
    /// after a post-copy switchover it abandons a paused post-copy (now, or at the next pause); in
    /// between — the VM is moving over — it cannot apply.
    /// </summary>
    public void HandleCancel(TimeSpan now)
    {
        if (Outcome is not null)
        {
            return;
        }
        _cancelRequested = true;
        if (!Phase.IsPastCommit())
        {
            Fail(MigrationFailure.Cancelled, "cancelled by request", now);
        }
        else if (Phase == MigrationPhase.PostCopyPaused && _awaiting != Awaiting.Reconnect)
        {
            Abandon(now);
        }
    }

    /// <summary>A resume request for a paused post-copy: a fresh automatic window, starting with an attempt now. False when nothing is paused.</summary>
    public bool HandleResumeRequested(TimeSpan now)
    {
        if (Phase != MigrationPhase.PostCopyPaused || Outcome is not null)
        {
            return false;
        }
        _recovery.ResumeRequested(now);
        if (_awaiting == Awaiting.ReconnectWait)
        {
            _awaiting = Awaiting.None;
            _wakeAt = null;
            NextRecoveryStep(now);
        }
        return true;
    }

    /// <summary>
    /// The connection to the destination failed: it closed, broke, sent garbage or an Abort (the
    /// <paramref name="kind"/> says which). Before the commit point the migration fails and the VM
    /// runs on; between commit and resume confirmation it ends unconfirmed; after a post-copy
    /// switchover a disconnect pauses post-copy (when the driver can reconnect), anything else fails it.
    /// </summary>
    public void HandleLinkBroken(MigrationFailure kind, string message, TimeSpan now)
    {
        if (Outcome is not null)
        {
            return;
        }
        if (Phase is MigrationPhase.PostCopy or MigrationPhase.PostCopyConfirm)
        {
            if (!_settings.CanReconnect || kind != MigrationFailure.PeerDisconnected)
            {
                FailPostCopy(kind, message, now);
                return;
            }
            if (_recovery.Broke(message, now) is { } gaveUp)
            {
                FailPostCopy(MigrationFailure.PeerDisconnected, gaveUp, now);
                return;
            }
            _commands.Clear();
            _awaiting = Awaiting.None;
            _wakeAt = null;
            Disarm();
            Move(MigrationPhase.PostCopyPaused);
            if (_cancelRequested)
            {
                Abandon(now);
                return;
            }
            NextRecoveryStep(now);
            return;
        }
        if (Phase == MigrationPhase.PostCopyPaused)
        {
            // An old connection's reader noticing late: the pause already knows.
            return;
        }
        if (StallWatched && now >= StallAt && kind is MigrationFailure.PeerDisconnected or MigrationFailure.Timeout)
        {
            // A write that gave up after the stall timeout (the driver gives every write that limit): nothing moved for that long.
            Fail(MigrationFailure.Timeout, $"{StallMessage} ({message})", now);
            return;
        }
        Fail(kind, message, now);
    }

    private string StallMessage =>
        $"destination stalled: nothing moved for {Seconds(_options.StallTimeout)} s ({Phase.ToWire()}{(Round > 0 ? $", round {Round}" : "")})";

    /// <summary>Something the driver did failed (a write, a read of guest RAM, its own bug): handled as a broken link of that kind.</summary>
    public void HandleFailure(MigrationFailure kind, string message, TimeSpan now)
    {
        if (_awaiting is Awaiting.Reconnect)
        {
            HandleReconnectFailed(message, retryable: kind == MigrationFailure.PeerDisconnected, now);
            return;
        }
        HandleLinkBroken(kind, message, now);
    }

    /// <summary>The destination sent a frame nobody asked for (<paramref name="what"/> names it).</summary>
    public void HandleUnexpectedAnswer(string what, TimeSpan now)
    {
        if (Outcome is not null)
        {
            return;
        }
        string asked = _awaiting switch
        {
            Awaiting.OfferAcceptance => "the offer",
            Awaiting.SwitchoverVerdict => "switchover",
            Awaiting.Resumed => "commit",
            Awaiting.PostCopyComplete => "the end of post-copy",
            _ => "nothing (during " + Phase.ToWire() + ")",
        };
        HandleLinkBroken(MigrationFailure.ProtocolViolation, $"destination answered {asked} with {what}", now);
    }

    // ---- events: the migration's steps, in order -----------------------------------------------

    public void HandleOfferAccepted(OfferAcceptance acceptance, TimeSpan now)
    {
        Moved(now);
        if (!ExpectAnswer(Awaiting.OfferAcceptance, "OfferAccepted", now))
        {
            return;
        }
        Disarm();
        if (acceptance.PageConnections < 0 || acceptance.PageConnections > _settings.PageConnections)
        {
            Fail(MigrationFailure.ProtocolViolation,
                $"destination took {acceptance.PageConnections} page connections; {_settings.PageConnections} were offered", now);
            return;
        }
        Acceptance = acceptance;
        if (acceptance.PageConnections > 0)
        {
            Await(Awaiting.PageConnections, new SourceCommand(SourceCommandKind.OpenPageConnections, Round: acceptance.PageConnections));
            return;
        }
        BeginTechnique(now);
    }

    /// <summary>The page connections the destination took are open (before any page goes).</summary>
    public void HandlePageConnectionsOpen(TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.PageConnections))
        {
            return;
        }
        BeginTechnique(now);
    }

    /// <summary>Page connections in use (0: everything on the control connection).</summary>
    public int PageConnections => Acceptance?.PageConnections ?? 0;

    private void BeginTechnique(TimeSpan now)
    {
        switch (_options.Technique)
        {
            case MigrationTechnique.StopAndCopy:
                StopReason = "stop-and-copy: the VM is paused for the whole copy";
                Pause(now);
                break;
            case MigrationTechnique.PostCopy:
                // No live round: every page ever written is fetched after the VM runs at the destination.
                StopReason = "postcopy: the VM resumes at the destination at once";
                _endsInPostCopy = true;
                Pause(now);
                break;
            default:
                Enqueue(new SourceCommand(SourceCommandKind.StartDirtyLog));
                StartPacing(now);
                BeginRound(1, _settings.GuestPages, RoundKind.Live, PageSelection.AllPopulated, now);
                break;
        }
    }

    /// <summary>One page frame written: <paramref name="pages"/> pages, of which <paramref name="zeroPages"/> were zero and <paramref name="firstTime"/> had never been sent.</summary>
    public void HandleBatchSent(int pages, int zeroPages, int firstTime, TimeSpan now)
    {
        Moved(now);
        Counters.PagesSent += pages;
        Counters.ZeroSent += zeroPages;
        Counters.UniqueSent += firstTime;
        _rounds.RoundSent += pages;
    }

    /// <summary>Never-written pages the driver skipped while scanning (round 1 or the static copy).</summary>
    public void HandleNeverWrittenSkipped(long pages) => Counters.NeverWrittenSkipped += pages;

    /// <summary>The round's pages and its round-end marker(s) are written.</summary>
    public void HandleRoundSent(TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.PagesSent))
        {
            return;
        }
        if (_rounds.Kind == RoundKind.Live)
        {
            Await(Awaiting.Harvest, new SourceCommand(SourceCommandKind.HarvestDirtyLog));
            return;
        }
        // The paused copy is out: the vCPU and device state follow.
        Timeline.FinalPagesDone = now;
        _rounds.RecordPaused("switchover", StopReason ?? "", now, Counters.WireBytes);
        Move(MigrationPhase.State);
        Await(Awaiting.StateSent, new SourceCommand(SourceCommandKind.SendState));
    }

    /// <summary>The live round's harvest: <paramref name="dirtied"/> pages were written while it ran. The policy decides.</summary>
    public void HandleDirtyHarvested(long dirtied, TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.Harvest))
        {
            return;
        }
        RoundObservation o = _rounds.Observe(dirtied, now, now - Timeline.Start, Counters.WireBytes, _settings.RamBytes);
        PolicyDecision decision = _policy.Decide(o);
        _rounds.RecordLive(o, decision);
        switch (decision.Action)
        {
            case PolicyAction.Abort:
                Fail(MigrationFailure.Aborted, $"policy aborted: {decision.Reason}", now);
                return;
            case PolicyAction.Continue:
                BeginRound(_rounds.Round + 1, dirtied, RoundKind.Live, PageSelection.Pending, now);
                return;
            default:
                StopReason = decision.Reason;
                _endsInPostCopy = decision.Action == PolicyAction.SwitchToPostCopy;
                // Let the link drain first: pages still in flight would otherwise arrive inside the downtime.
                Move(MigrationPhase.Draining);
                _awaiting = Awaiting.RoundAck;
                Arm(Deadline.RoundDrain, now + _options.SwitchoverTimeout);
                CheckDrained(now);
                return;
        }
    }

    /// <summary>The destination installed every page up to the end of <paramref name="round"/> (on every connection).</summary>
    public void HandleRoundAcked(int round, TimeSpan now)
    {
        Moved(now);
        _lastAckedRound = Math.Max(_lastAckedRound, round);
        if (Outcome is null && _awaiting == Awaiting.RoundAck)
        {
            CheckDrained(now);
        }
    }

    public void HandlePaused(TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.Paused))
        {
            return;
        }
        Timeline.PausedAt = now;
        switch (_options.Technique)
        {
            case MigrationTechnique.StopAndCopy:
                StartPacing(now);
                Move(MigrationPhase.StopAndCopy);
                BeginRound(1, _settings.GuestPages, RoundKind.StopAndCopy, PageSelection.AllPopulated, now);
                break;
            case MigrationTechnique.PostCopy:
                StartPacing(now);
                Await(Awaiting.PostCopyPages, new SourceCommand(SourceCommandKind.CollectPostCopyPages));
                break;
            default:
                Await(Awaiting.FinalDirtyPages, new SourceCommand(SourceCommandKind.TakeFinalDirtyPages));
                break;
        }
    }

    /// <summary>
    /// After the pause: <paramref name="pending"/> pages are dirty since they were last sent (the
    /// last round's harvest and what the pause caught); <paramref name="neverWritten"/> pages of
    /// guest RAM were never written (a post-copy destination makes them zero itself).
    /// </summary>
    public void HandleFinalDirtyPages(long pending, long neverWritten, TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.FinalDirtyPages))
        {
            return;
        }
        if (_endsInPostCopy)
        {
            ZeroFilledLocally = neverWritten;
            PreCopyRounds = _rounds.Count;
            BeginPostCopySwitch(pending, now);
            return;
        }
        Move(MigrationPhase.StopAndCopy);
        BeginRound(_rounds.Round + 1, pending, RoundKind.StopAndCopy, PageSelection.Pending, now);
    }

    /// <summary>Pure post-copy: <paramref name="pending"/> pages were ever written (all go after the switch), <paramref name="neverWritten"/> never were.</summary>
    public void HandlePostCopyPagesCollected(long pending, long neverWritten, TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.PostCopyPages))
        {
            return;
        }
        Counters.NeverWrittenSkipped += neverWritten;
        ZeroFilledLocally = neverWritten;
        PreCopyRounds = 0;
        BeginPostCopySwitch(pending, now);
    }

    public void HandleStateSent(TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.StateSent))
        {
            return;
        }
        if (_endsInPostCopy)
        {
            Await(Awaiting.PendingMapSent, new SourceCommand(SourceCommandKind.SendPendingMap));
            return;
        }
        Timeline.StateDone = now;
        Await(Awaiting.SwitchoverSent, new SourceCommand(SourceCommandKind.SendSwitchover));
    }

    public void HandlePendingMapSent(TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.PendingMapSent))
        {
            return;
        }
        Timeline.StateDone = now;
        Await(Awaiting.SwitchoverSent, new SourceCommand(SourceCommandKind.SendSwitchover));
    }

    /// <summary>Switchover written with <paramref name="digest"/>; folding it took <paramref name="digestMs"/> of the downtime.</summary>
    public void HandleSwitchoverSent(ulong digest, double digestMs, TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.SwitchoverSent))
        {
            return;
        }
        SourceDigest = digest;
        DigestInDowntimeMs = digestMs;
        Move(MigrationPhase.Switchover);
        _awaiting = Awaiting.SwitchoverVerdict;
        Arm(Deadline.SwitchoverVerdict, now + _options.SwitchoverTimeout);
    }

    public void HandleSwitchoverVerdict(SwitchoverVerdict verdict, TimeSpan now)
    {
        Moved(now);
        if (!ExpectAnswer(Awaiting.SwitchoverVerdict, "SwitchoverReady", now))
        {
            return;
        }
        Disarm();
        SwitchoverVerdict = verdict;
        if (!verdict.DigestMatches)
        {
            Fail(MigrationFailure.DigestMismatch,
                $"memory digest mismatch at switchover: source {FormatDigest(SourceDigest)}, destination {verdict.DestinationDigest}" +
                (verdict.Problem is { } p ? $" ({p})" : ""), now);
            return;
        }
        // The last point of no return: a cancel or a failure before the commit frame is written still
        // resumes the source. (A write that fails cannot have delivered the whole checksummed frame.)
        Await(Awaiting.CommitSent, new SourceCommand(SourceCommandKind.SendCommit));
    }

    public void HandleCommitSent(TimeSpan now)
    {
        Moved(now);
        if (!ExpectCompletion(Awaiting.CommitSent))
        {
            return;
        }
        Committed = true;
        Move(MigrationPhase.Commit);
        _awaiting = Awaiting.Resumed;
        Arm(Deadline.ResumeConfirmation, now + _options.SwitchoverTimeout);
    }

    /// <summary>The destination runs the VM; its own part of the switchover took <paramref name="destinationResumeMs"/>.</summary>
    public void HandleResumed(double destinationResumeMs, TimeSpan now)
    {
        if (!ExpectAnswer(Awaiting.Resumed, "Resumed", now))
        {
            return;
        }
        Disarm();
        Timeline.ResumedAt = now;
        DestinationResumeMs = destinationResumeMs;
        if (!_endsInPostCopy)
        {
            Complete();
            return;
        }
        PostCopyUsed = true;
        Move(MigrationPhase.PostCopy);
        _postCopy.Start(autoPacing: _options.MaxBandwidthBytesPerSecond == 0 && _settings.CanMeasureLink);
        _rounds.Begin(_rounds.Round + 1, _postCopy.Remaining, RoundKind.PostCopy, now, Counters.WireBytes);
    }

    // ---- post-copy -------------------------------------------------------------------------------

    /// <summary><paramref name="count"/> page requests arrived (from the moment the VM may run at the destination).</summary>
    public void HandlePageRequests(int count, TimeSpan now) => _postCopy.RequestsArrived(count);

    public void HandleLinkSample(LinkDelivery? sample, TimeSpan now)
    {
        if (!ExpectCompletion(Awaiting.LinkSample))
        {
            return;
        }
        _postCopy.LinkSampled(sample, now, _pacer, _settings.PushFrameBytes);
    }

    /// <summary>Answered <paramref name="taken"/> requests: <paramref name="sent"/> pages went, <paramref name="alreadySent"/> were on their way already.</summary>
    public void HandleDemandAnswered(int taken, long sent, long alreadySent, TimeSpan now)
    {
        if (!ExpectCompletionOrLate(Awaiting.DemandAnswered))
        {
            return;
        }
        _postCopy.DemandAnswered(taken, sent, alreadySent);
    }

    /// <summary>Pushed <paramref name="pages"/> pages, <paramref name="prePaged"/> of them within the pre-paging window of the last fault.</summary>
    public void HandlePushed(long pages, long prePaged, TimeSpan now)
    {
        if (!ExpectCompletionOrLate(Awaiting.Pushed))
        {
            return;
        }
        _postCopy.Pushed(pages, prePaged);
        if (Phase == MigrationPhase.PostCopy && pages == 0 && _postCopy.Remaining > 0)
        {
            // The cursor returns every pending page, so a push without progress is a bug here, not a reason to spin.
            FailPostCopy(MigrationFailure.Internal, $"post-copy lost track of {_postCopy.Remaining} pending pages", now);
        }
    }

    public void HandlePostCopyEndSent(ulong digest, TimeSpan now)
    {
        if (!ExpectCompletion(Awaiting.PostCopyEndSent))
        {
            return;
        }
        SourceDigest = digest;
        PostCopyEndSent = true;
        Move(MigrationPhase.PostCopyConfirm);
        _awaiting = Awaiting.PostCopyComplete;
        Arm(Deadline.PostCopyCompletion, now + _options.PostCopyCompletionTimeout);
    }

    public void HandlePostCopyComplete(PostCopyVerdict verdict, TimeSpan now)
    {
        if (!ExpectAnswer(Awaiting.PostCopyComplete, "PostCopyComplete", now))
        {
            return;
        }
        Disarm();
        PostCopyVerdict = verdict;
        Timeline.CompletedAt = now;
        if (!verdict.DigestMatches)
        {
            FailPostCopy(MigrationFailure.DigestMismatch,
                $"memory digest mismatch after post-copy: source {FormatDigest(SourceDigest)}, destination {verdict.DestinationDigest}" +
                (verdict.Problem is { } p ? $" ({p})" : ""), now);
            return;
        }
        string recoveries = _recovery.Recoveries > 0 ? $"; {_recovery.Recoveries} reconnection(s), {_recovery.PagesLost} pages sent again" : "";
        _rounds.RecordPaused("post-copy", $"{_postCopy.DemandPages} on demand, {_postCopy.PrePagedPages} pre-paged, {_postCopy.PushPages} pushed{recoveries}",
            now, Counters.WireBytes);
        Complete();
    }

    /// <summary>A new connection to the destination: it said which pages it still lacks, <paramref name="pagesLost"/> of which had been sent (lost in flight) and are pending again.</summary>
    public void HandleReconnected(long pagesLost, TimeSpan now)
    {
        if (!ExpectCompletion(Awaiting.Reconnect))
        {
            return;
        }
        _recovery.Reconnected(pagesLost, now);
        _postCopy.Reconnected(pagesLost);
        Move(MigrationPhase.PostCopy);
    }

    /// <summary>An attempt to reconnect failed; <paramref name="retryable"/> false when trying again cannot help (the destination answered and refused).</summary>
    public void HandleReconnectFailed(string message, bool retryable, TimeSpan now)
    {
        if (!ExpectCompletion(Awaiting.Reconnect))
        {
            return;
        }
        if (!retryable)
        {
            _recovery.Ended(now);
            FailPostCopy(MigrationFailure.Aborted, message, now);
            return;
        }
        if (_cancelRequested)
        {
            Abandon(now);
            return;
        }
        _wakeAt = _recovery.AttemptFailed(message, now);
        _awaiting = Awaiting.ReconnectWait;
    }

    public void HandleSourceCopyVerified(bool matches, double ms, TimeSpan now)
    {
        if (!ExpectCompletion(Awaiting.SourceCopyVerified))
        {
            return;
        }
        SourceRehashMatches = matches;
        SourceRehashMs = ms;
    }

    // ---- internals -------------------------------------------------------------------------------

    private void SchedulePostCopy(TimeSpan now)
    {
        switch (_postCopy.Next(now, _pacer, _settings.TimerResolution, out TimeSpan wakeAt))
        {
            case PostCopyScheduler.Step.Finished:
                Timeline.LastPageSentAt = now;
                Await(Awaiting.PostCopyEndSent, new SourceCommand(SourceCommandKind.SendPostCopyEnd));
                break;
            case PostCopyScheduler.Step.SampleLink:
                Await(Awaiting.LinkSample, new SourceCommand(SourceCommandKind.SampleLink));
                break;
            case PostCopyScheduler.Step.AnswerDemand:
                _wakeAt = null;
                Await(Awaiting.DemandAnswered, new SourceCommand(SourceCommandKind.AnswerDemand, Round: _rounds.Round, RoundKind: RoundKind.PostCopy));
                break;
            case PostCopyScheduler.Step.Push:
                _wakeAt = null;
                Await(Awaiting.Pushed, new SourceCommand(SourceCommandKind.PushPages, Round: _rounds.Round, RoundKind: RoundKind.PostCopy,
                    MaxPages: PostCopyScheduler.PushBatchPages));
                break;
            default:
                _wakeAt = wakeAt;
                break;
        }
    }

    private void NextRecoveryStep(TimeSpan now)
    {
        switch (_recovery.Next(now, out TimeSpan wakeAt, out string? gaveUp))
        {
            case PostCopyRecovery.RecoveryStep.GiveUp:
                _recovery.Ended(now);
                FailPostCopy(MigrationFailure.PeerDisconnected, gaveUp!, now);
                break;
            case PostCopyRecovery.RecoveryStep.Attempt:
                Await(Awaiting.Reconnect, new SourceCommand(SourceCommandKind.Reconnect));
                break;
            default:
                _awaiting = Awaiting.ReconnectWait;
                _wakeAt = wakeAt;
                break;
        }
    }

    private void StartPacing(TimeSpan now) => _pacer.Start(_options.MaxBandwidthBytesPerSecond, _settings.MaxBatchFrameBytes, now);

    private void Pause(TimeSpan now)
    {
        Move(MigrationPhase.Pausing);
        Await(Awaiting.Paused, new SourceCommand(SourceCommandKind.PauseVm));
    }

    private void BeginRound(int round, long pages, RoundKind kind, PageSelection selection, TimeSpan now)
    {
        if (kind == RoundKind.Live && Phase != MigrationPhase.PreCopy)
        {
            Move(MigrationPhase.PreCopy);
        }
        _rounds.Begin(round, pages, kind, now, Counters.WireBytes);
        Await(Awaiting.PagesSent, new SourceCommand(SourceCommandKind.SendPages, Round: round, Pages: selection, RoundKind: kind));
    }

    private void CheckDrained(TimeSpan now)
    {
        if (_lastAckedRound < _rounds.Round)
        {
            return;
        }
        _awaiting = Awaiting.None;
        Disarm();
        Pause(now);
    }

    private void BeginPostCopySwitch(long pending, TimeSpan now)
    {
        _postCopy.SetPending(pending);
        Timeline.FinalPagesDone = now;
        Move(MigrationPhase.State);
        Await(Awaiting.StateSent, new SourceCommand(SourceCommandKind.SendState));
    }

    private void Complete()
    {
        Move(MigrationPhase.Completed);
        Outcome = MigrationOutcome.Completed;
        Await(Awaiting.SourceCopyVerified, new SourceCommand(SourceCommandKind.VerifySourceCopy));
    }

    /// <summary>Every failure comes here; the phase decides what it leaves behind.</summary>
    private void Fail(MigrationFailure kind, string message, TimeSpan now)
    {
        if (Outcome is not null)
        {
            return;
        }
        if (Phase == MigrationPhase.Commit)
        {
            // The commit frame went out (or was going): the destination may run the VM, so the source copy stays paused.
            Finish(MigrationPhase.Unconfirmed, MigrationFailure.PeerDisconnected,
                $"commit was sent but the destination did not confirm resuming ({message}); the source VM is kept paused");
            return;
        }
        if (Phase.IsPastCommit())
        {
            FailPostCopy(kind, message, now);
            return;
        }
        Finish(kind == MigrationFailure.Cancelled ? MigrationPhase.Cancelled : MigrationPhase.Failed, kind, message);
        Enqueue(new SourceCommand(SourceCommandKind.TellDestination, Reason: message));
        Enqueue(new SourceCommand(SourceCommandKind.ResumeVm));
    }

    /// <summary>After a post-copy switchover the VM ran at the destination: resuming the source copy would fork it, so it stays paused.</summary>
    private void FailPostCopy(MigrationFailure kind, string message, TimeSpan now)
    {
        if (Outcome is not null)
        {
            return;
        }
        // Once the last page went out the destination may have finished and only its verdict was lost: it may be running the VM.
        MigrationPhase end = PostCopyEndSent ? MigrationPhase.Unconfirmed : MigrationPhase.Failed;
        string reason = $"post-copy failed after the VM resumed at the destination: {message}; the source keeps its paused copy";
        Finish(end, kind, reason);
        Enqueue(new SourceCommand(SourceCommandKind.TellDestination, Reason: reason));
    }

    private void Abandon(TimeSpan now)
    {
        _recovery.Ended(now);
        FailPostCopy(MigrationFailure.Aborted,
            $"post-copy abandoned by request while paused; the destination's VM still lacks {_postCopy.Remaining} pages " +
            "and stops when the destination's own pause limit passes", now);
    }

    private void Finish(MigrationPhase end, MigrationFailure kind, string message)
    {
        _commands.Clear();
        _awaiting = Awaiting.None;
        _wakeAt = null;
        Disarm();
        Move(end);
        Outcome = end.ToOutcome();
        Failure = kind;
        Error = message;
    }

    private void Move(MigrationPhase to)
    {
        if (to == Phase)
        {
            return;
        }
        if (!MigrationPhases.IsLegal(Phase, to))
        {
            throw new InvalidOperationException($"illegal phase transition {Phase} → {to}");
        }
        MigrationPhase from = Phase;
        Phase = to;
        PhaseChanged?.Invoke(from, to);
    }

    private void Await(Awaiting what, SourceCommand command)
    {
        _awaiting = what;
        Enqueue(command);
    }

    private void Enqueue(SourceCommand command) => _commands.Enqueue(command);

    private void Arm(Deadline what, TimeSpan at)
    {
        _deadline = what;
        _deadlineAt = at;
    }

    private void Disarm() => _deadline = Deadline.None;

    /// <summary>A driver completion: it must be the one awaited (anything else is a driver bug). False when the machine has ended meanwhile.</summary>
    private bool ExpectCompletion(Awaiting what)
    {
        if (_awaiting == what)
        {
            _awaiting = Awaiting.None;
            return true;
        }
        if (Outcome is not null)
        {
            return false;
        }
        throw new InvalidOperationException($"driver reported {what} while the machine waits for {_awaiting} (phase {Phase})");
    }

    /// <summary>
    /// A post-copy send's completion. The link may have broken while it ran (post-copy paused, or
    /// ended): its pages still count, so the pending count stays true, but nothing waits for it.
    /// </summary>
    private bool ExpectCompletionOrLate(Awaiting what)
    {
        if (_awaiting == what)
        {
            _awaiting = Awaiting.None;
            return true;
        }
        if (Phase == MigrationPhase.PostCopyPaused || Outcome is not null)
        {
            return true;
        }
        throw new InvalidOperationException($"driver reported {what} while the machine waits for {_awaiting} (phase {Phase})");
    }

    /// <summary>A destination answer: one nobody asked for is the destination's protocol violation.</summary>
    private bool ExpectAnswer(Awaiting what, string frame, TimeSpan now)
    {
        if (Outcome is not null)
        {
            return false;
        }
        if (_awaiting != what)
        {
            HandleUnexpectedAnswer(frame, now);
            return false;
        }
        _awaiting = Awaiting.None;
        return true;
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0", CultureInfo.InvariantCulture);

    /// <summary>16 lower-case hex digits, as the destination formats its digest.</summary>
    public static string FormatDigest(ulong digest) => digest.ToString("x16", CultureInfo.InvariantCulture);
}
