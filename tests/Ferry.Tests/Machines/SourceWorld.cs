using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Policy;

namespace Ferry.Tests.Machines;

/// <summary>
/// A scripted world around a <see cref="SourceMigrationMachine"/>: a virtual clock, a guest that
/// dirties a given number of pages per round, a link of a given speed and a destination that
/// answers every frame honestly — unless a test intercepts a command and answers it itself. No
/// socket, no thread, no wall clock: every event carries the world's time.
/// </summary>
internal sealed class SourceWorld
{
    public const int FrameBytes = 24 + 8 + 256 * (8 + 4096);
    public const int PushFrameBytes = 24 + 8 + 16 * (8 + 4096);

    private readonly List<MigrationPhase> _phases = [];
    private readonly List<SourceCommand> _commands = [];
    private long _postCopyLeft;

    public SourceWorld(MigrationOptions options, long guestPages = 4096, long populated = 3000, bool canReconnect = false, bool canMeasureLink = false)
    {
        GuestPages = guestPages;
        Populated = populated;
        M = new SourceMigrationMachine(new SourceMachineSettings
        {
            Options = options,
            GuestPages = guestPages,
            MaxBatchFrameBytes = FrameBytes,
            PushFrameBytes = PushFrameBytes,
            CanReconnect = canReconnect,
            CanMeasureLink = canMeasureLink,
        }, Now);
        _phases.Add(M.Phase);
        M.PhaseChanged = (_, to) => _phases.Add(to);
    }

    public SourceMigrationMachine M { get; }

    public TimeSpan Now { get; set; } = TimeSpan.FromSeconds(100);

    public long GuestPages { get; }

    public long Populated { get; }

    /// <summary>Pages the guest dirties while round N runs (default: half of the last round, so pre-copy converges).</summary>
    public Func<int, long, long> Dirtied { get; set; } = (round, sent) => sent / 2;

    /// <summary>Pages the link carries per second.</summary>
    public double PagesPerSecond { get; set; } = 25_000;

    /// <summary>Extra pages the pause catches after the last live round.</summary>
    public long DirtiedDuringDrain { get; set; } = 10;

    /// <summary>A test's own answer to a command: return true when it handled it (the world then does nothing).</summary>
    public Func<SourceCommand, bool>? Intercept { get; set; }

    /// <summary>When false the destination sends no answers by itself (offer acceptance, verdicts, acknowledgements).</summary>
    public bool DestinationAnswers { get; set; } = true;

    /// <summary>The destination's digest verdicts (switchover, then post-copy).</summary>
    public bool SwitchoverMatches { get; set; } = true;
    public bool PostCopyMatches { get; set; } = true;

    /// <summary>Reconnection attempts that will fail before one succeeds.</summary>
    public int ReconnectFailures { get; set; }

    /// <summary>The last verdicts the destination gave (null: none yet).</summary>
    public bool? LastSwitchoverVerdict { get; private set; }
    public bool? LastPostCopyVerdict { get; private set; }

    /// <summary>Pages pending in post-copy at the world's end (what the driver's backlog holds).</summary>
    public long PostCopyLeft => _postCopyLeft;

    /// <summary>Page requests the destination has made and the driver has not answered.</summary>
    public Queue<long> Requests { get; } = new();

    public IReadOnlyList<MigrationPhase> Phases => _phases;

    public IReadOnlyList<SourceCommand> Commands => _commands;

    public IEnumerable<SourceCommandKind> Kinds => _commands.Select(c => c.Kind);

    /// <summary>Runs one command, or (when the machine waits) moves the clock to its next timeout. False once finished.</summary>
    public bool Step()
    {
        if (M.IsFinished)
        {
            return false;
        }
        if (M.TryPoll(Now, out SourceCommand c))
        {
            _commands.Add(c);
            if (Intercept?.Invoke(c) != true)
            {
                Execute(c);
            }
        }
        else
        {
            Now = M.NextTimeout() is { } at && at > Now ? at : Now + TimeSpan.FromMilliseconds(1);
            M.HandleTimeout(Now);
        }
        Record();
        return !M.IsFinished;
    }

    /// <summary>Steps until the machine is finished (bounded).</summary>
    public SourceWorld RunToEnd(int maxSteps = 200_000)
    {
        for (int i = 0; i < maxSteps && Step(); i++)
        {
        }
        Assert.True(M.IsFinished, $"not finished after {maxSteps} steps: phase {M.Phase}, last command {_commands.LastOrDefault()}");
        return this;
    }

    /// <summary>Steps until <paramref name="until"/> holds (bounded); false if the machine finished first.</summary>
    public bool RunUntil(Func<SourceWorld, bool> until, int maxSteps = 200_000)
    {
        for (int i = 0; i < maxSteps; i++)
        {
            if (until(this))
            {
                return true;
            }
            if (!Step())
            {
                return until(this);
            }
        }
        throw new InvalidOperationException($"condition not reached in {maxSteps} steps (phase {M.Phase})");
    }

    public void Record() => Assert.Equal(M.Phase, _phases[^1]);

    public void Advance(TimeSpan by) => Now += by;

    private void Send(long pages, int frameBytes)
    {
        Now += TimeSpan.FromSeconds(pages / PagesPerSecond);
        M.CountWireBytes(frameBytes);
    }

    /// <summary>What an honest engine and destination do.</summary>
    public void Execute(SourceCommand c)
    {
        switch (c.Kind)
        {
            case SourceCommandKind.SendOffer:
                M.CountWireBytes(300);
                if (DestinationAnswers)
                {
                    Now += TimeSpan.FromMilliseconds(1);
                    M.HandleOfferAccepted(new OfferAcceptance { HostName = "dest", PageInstall = "copy" }, Now);
                }
                break;
            case SourceCommandKind.SendPages:
            {
                long pages = c.Pages == PageSelection.AllPopulated ? Populated : M.RoundPages;
                if (c.Pages == PageSelection.AllPopulated)
                {
                    M.HandleNeverWrittenSkipped(GuestPages - Populated);
                }
                for (long left = pages; left > 0; left -= 256)
                {
                    int n = (int)Math.Min(256, left);
                    Now += M.SendDelay(FrameBytes, Now);
                    Send(n, FrameBytes);
                    M.HandleBatchSent(n, 0, c.Round == 1 ? n : 0, Now);
                }
                M.CountWireBytes(40);
                M.HandleRoundSent(Now);
                if (DestinationAnswers)
                {
                    M.HandleRoundAcked(c.Round, Now);
                }
                break;
            }
            case SourceCommandKind.HarvestDirtyLog:
                M.HandleDirtyHarvested(Dirtied(M.Round, M.RoundSent), Now);
                break;
            case SourceCommandKind.PauseVm:
                M.HandlePaused(Now);
                break;
            case SourceCommandKind.TakeFinalDirtyPages:
                _postCopyLeft = M.Rounds.Count > 0 ? M.Rounds[^1].PagesDirtied + DirtiedDuringDrain : Populated;
                M.HandleFinalDirtyPages(_postCopyLeft, GuestPages - Populated, Now);
                break;
            case SourceCommandKind.CollectPostCopyPages:
                _postCopyLeft = Populated;
                M.HandlePostCopyPagesCollected(Populated, GuestPages - Populated, Now);
                break;
            case SourceCommandKind.SendState:
                M.CountWireBytes(500);
                M.HandleStateSent(Now);
                break;
            case SourceCommandKind.SendPendingMap:
                M.CountWireBytes(600);
                M.HandlePendingMapSent(Now);
                break;
            case SourceCommandKind.SendSwitchover:
                M.CountWireBytes(56);
                M.HandleSwitchoverSent(0x1234, 0.1, Now);
                if (DestinationAnswers)
                {
                    Now += TimeSpan.FromMilliseconds(1);
                    LastSwitchoverVerdict = SwitchoverMatches;
                    M.HandleSwitchoverVerdict(new SwitchoverVerdict { DigestMatches = SwitchoverMatches, DestinationDigest = SwitchoverMatches ? "0000000000001234" : "00000000000000ff" }, Now);
                }
                break;
            case SourceCommandKind.SendCommit:
                M.CountWireBytes(24);
                M.HandleCommitSent(Now);
                if (DestinationAnswers)
                {
                    Now += TimeSpan.FromMilliseconds(1);
                    M.HandleResumed(0.5, Now);
                }
                break;
            case SourceCommandKind.SampleLink:
                M.HandleLinkSample(new Ferry.Core.Pacing.LinkDelivery((ulong)(M.Counters.WireBytes)), Now);
                break;
            case SourceCommandKind.AnswerDemand:
            {
                int taken = 0;
                long sent = 0;
                while (Requests.TryDequeue(out _))
                {
                    taken++;
                    if (_postCopyLeft > 0)
                    {
                        _postCopyLeft--;
                        sent++;
                    }
                }
                if (sent > 0)
                {
                    M.Owe(PushFrameBytes, Now);
                    Send(sent, PushFrameBytes);
                    M.HandleBatchSent((int)sent, 0, 0, Now);
                }
                M.HandleDemandAnswered(taken, sent, taken - sent, Now);
                break;
            }
            case SourceCommandKind.PushPages:
            {
                long n = Math.Min(c.MaxPages, _postCopyLeft);
                _postCopyLeft -= n;
                M.Owe(PushFrameBytes, Now);
                Send(n, PushFrameBytes);
                M.HandleBatchSent((int)n, 0, 0, Now);
                M.HandlePushed(n, 0, Now);
                break;
            }
            case SourceCommandKind.SendPostCopyEnd:
                M.CountWireBytes(40);
                M.HandlePostCopyEndSent(0x5678, Now);
                if (DestinationAnswers)
                {
                    Now += TimeSpan.FromMilliseconds(1);
                    LastPostCopyVerdict = PostCopyMatches;
                    M.HandlePostCopyComplete(new PostCopyVerdict { DigestMatches = PostCopyMatches, DestinationDigest = "0000000000005678", ResumeMs = 3 }, Now);
                }
                break;
            case SourceCommandKind.Reconnect:
                Now += TimeSpan.FromMilliseconds(2);
                if (ReconnectFailures > 0)
                {
                    ReconnectFailures--;
                    M.HandleReconnectFailed("connection refused", retryable: true, Now);
                }
                else
                {
                    M.HandleReconnected(0, Now);
                }
                break;
            case SourceCommandKind.VerifySourceCopy:
                M.HandleSourceCopyVerified(true, 1, Now);
                break;
            case SourceCommandKind.StartDirtyLog:
            case SourceCommandKind.TellDestination:
            case SourceCommandKind.ResumeVm:
                break;
            default:
                throw new InvalidOperationException($"the world does not know {c}");
        }
    }

    public static MigrationOptions Options(MigrationTechnique technique, long bandwidth = 100L << 20, int? maxRounds = 10) => new()
    {
        Technique = technique,
        MaxBandwidthBytesPerSecond = bandwidth,
        PreCopy = new PreCopyOptions { MaxRounds = maxRounds },
        PostCopyRecoveryTimeout = TimeSpan.FromSeconds(2),
        PostCopyPauseLimit = TimeSpan.FromSeconds(10),
    };
}
