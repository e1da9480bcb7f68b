using CsCheck;
using Ferry.Core.Machines.Destination;
using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;

namespace Ferry.Tests.Machines;

/// <summary>
/// Random legal event sequences against both machines: cancels, broken links of every kind,
/// silent or lying destinations, timers, page requests and resume requests at any moment. Whatever
/// happens: no illegal transition, never a commit before the digests agree, never the source copy
/// resumed after the commit or released before the last page is confirmed, and every run ends.
/// </summary>
public sealed class MachineProperties
{
    private static readonly MigrationTechnique[] Techniques =
        [MigrationTechnique.PreCopy, MigrationTechnique.StopAndCopy, MigrationTechnique.PostCopy, MigrationTechnique.Hybrid, MigrationTechnique.Auto];

    [Fact]
    public void The_source_machine_is_safe_and_ends_under_any_sequence_of_events()
    {
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        Gen.Select(Gen.Int[0, Techniques.Length - 1], Gen.Int[0, 1_000_000].Array[1, 60], Gen.Bool, Gen.Bool)
            .Sample((t, choices, canReconnect, measure) => RunSource(Techniques[t], choices, canReconnect, measure, seen), iter: 1000);
        // The runs reach every ending and the paths that matter, or the property would prove little.
        foreach (string end in new[] { "Completed", "Failed", "Cancelled", "Unconfirmed", "phase PostCopyPaused", "phase PostCopyConfirm", "resumed post-copy" })
        {
            Assert.True(seen.ContainsKey(end), $"no run reached {end} (seen: {string.Join(", ", seen.Keys)})");
        }
    }

    private static void RunSource(MigrationTechnique technique, int[] choices, bool canReconnect, bool measure,
        System.Collections.Concurrent.ConcurrentDictionary<string, int> seen)
    {
        var w = new SourceWorld(SourceWorld.Options(technique, bandwidth: measure ? 0 : 40L << 20), canReconnect: canReconnect, canMeasureLink: measure);
        bool committed = false;
        bool resumedVm = false;
        Action<MigrationPhase, MigrationPhase>? record = w.M.PhaseChanged;
        w.M.PhaseChanged = (from, to) =>
        {
            Assert.True(MigrationPhases.IsLegal(from, to), $"{from} → {to}");
            record?.Invoke(from, to);
        };
        w.Intercept = c =>
        {
            if (c.Kind == SourceCommandKind.SendCommit)
            {
                Assert.True(w.LastSwitchoverVerdict == true, "commit before the destination said the digests agree");
                committed = true;
            }
            if (c.Kind == SourceCommandKind.ResumeVm)
            {
                Assert.False(committed, "the source copy resumed after the commit: the VM would run twice");
                resumedVm = true;
            }
            return false;
        };
        int steps = 0;
        foreach (int choice in choices)
        {
            // Mostly honest steps between disturbances, so runs get deep into every phase.
            for (int i = choice % 40; i > 0 && w.Step(); i--)
            {
                steps++;
            }
            if (w.M.IsFinished)
            {
                break;
            }
            Disturb(w, choice / 40 % 11, choice);
        }
        // Then let the world behave: every path must end.
        w.DestinationAnswers = true;
        w.ReconnectFailures = 0;
        w.RunToEnd();
        seen.AddOrUpdate(w.M.Outcome.ToString()!, 1, (_, n) => n + 1);
        foreach (MigrationPhase p in w.Phases)
        {
            seen.TryAdd("phase " + p, 1);
        }
        if (w.M.Recoveries > 0)
        {
            seen.TryAdd("resumed post-copy", 1);
        }
        Assert.True(w.M.Phase.IsFinal());
        Assert.Equal(w.M.Phase.ToOutcome(), w.M.Outcome);
        if (w.M.Outcome == MigrationOutcome.Completed)
        {
            Assert.True(w.M.Committed);
            Assert.False(resumedVm);
            Assert.True(w.LastSwitchoverVerdict);
            if (w.M.PostCopyUsed)
            {
                // The source let go of its copy only once the destination confirmed every page.
                Assert.True(w.LastPostCopyVerdict, "completed without the destination confirming the last page");
                Assert.Equal(0, w.M.PostCopyRemaining);
            }
        }
        else if (!w.M.Committed)
        {
            Assert.True(resumedVm, $"failed before the commit ({w.M.Error}) without resuming the source VM");
        }
    }

    private static void Disturb(SourceWorld w, int kind, int choice)
    {
        switch (kind)
        {
            case 0:
                w.M.HandleCancel(w.Now);
                break;
            case 1:
                w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "connection reset", w.Now);
                break;
            case 2:
                w.M.HandleLinkBroken(MigrationFailure.ProtocolViolation, "bad frame", w.Now);
                break;
            case 3:
                w.M.HandleResumeRequested(w.Now);
                break;
            case 4:
                int n = 1 + choice % 3;
                for (int i = 0; i < n; i++)
                {
                    w.Requests.Enqueue(choice % 1000 + i);
                }
                w.M.HandlePageRequests(n, w.Now);
                break;
            case 5:
                w.DestinationAnswers = !w.DestinationAnswers;
                break;
            case 6:
                if (w.M.NextTimeout() is { } at)
                {
                    w.Now = at > w.Now ? at : w.Now;
                    w.M.HandleTimeout(w.Now);
                }
                break;
            case 7:
                w.SwitchoverMatches = !w.SwitchoverMatches;
                break;
            case 8:
                w.PostCopyMatches = !w.PostCopyMatches;
                break;
            case 9:
                w.ReconnectFailures = choice % 5;
                break;
            default:
                w.M.HandleUnexpectedAnswer("PendingPages", w.Now);
                break;
        }
        w.Record();
    }

    /// <summary>One destination event, as a driver could deliver it.</summary>
    public enum DestEvent
    {
        Offer,
        RefusedOffer,
        PageBatch,
        RoundEnd,
        Vcpu,
        Device,
        Pending,
        Switchover,
        Commit,
        PostCopyEnd,
        Abort,
        Broken,
        BrokenBadly,
        VcpuFailure,
        Timeout,
        Cancel,
    }

    [Fact]
    public void The_destination_machine_starts_the_vm_only_after_a_matching_verdict_and_a_commit_and_always_ends()
    {
        Gen.Select(Gen.Enum<DestEvent>().Array[1, 40], Gen.Bool, Gen.Bool, Gen.Bool)
            .Sample((events, canRecover, settleMatches, finishHonestly) => RunDestination(events, canRecover, settleMatches, finishHonestly), iter: 2000);
    }

    private static void RunDestination(DestEvent[] events, bool canRecover, bool settleMatches, bool finishHonestly)
    {
        TimeSpan now = TimeSpan.FromSeconds(1);
        var m = new DestinationMigrationMachine(new DestinationMachineSettings { MaxMemoryBytes = 1L << 30, CanRecover = canRecover }, now);
        var log = new List<DestinationCommand>();
        bool verdictMatched = false;
        bool committed = false;
        void Drain()
        {
            while (m.TryPoll(now, out DestinationCommand c))
            {
                log.Add(c);
                switch (c.Kind)
                {
                    case DestinationCommandKind.SendSwitchoverVerdict:
                        verdictMatched = c.Verdict.DigestMatches;
                        break;
                    case DestinationCommandKind.StartVm:
                        Assert.True(committed && verdictMatched, "VM started without a commit after a matching verdict");
                        m.HandleVmRunning(now);
                        break;
                    case DestinationCommandKind.AwaitPages:
                        // Pages settle (or, with a lying source, do not add up).
                        m.HandlePagesSettled(10, 0, settleMatches ? 0xAAUL : 0xBBUL, now);
                        break;
                }
            }
        }
        bool Frame(DestinationFrame f) => m.HandleFrame(f, f.ToString(), now);
        foreach (DestEvent e in events)
        {
            now += TimeSpan.FromMilliseconds(10);
            switch (e)
            {
                case DestEvent.Offer when Frame(DestinationFrame.Offer):
                    m.HandleOffer(new OfferCheck(1L << 20, 1), now);
                    break;
                case DestEvent.RefusedOffer when Frame(DestinationFrame.Offer):
                    m.HandleOffer(new OfferCheck(1L << 20, 1, AdmissionRefusal: "taken"), now);
                    break;
                case DestEvent.PageBatch when Frame(DestinationFrame.PageBatch):
                    m.HandlePostCopyProgress(0);
                    break;
                case DestEvent.RoundEnd when Frame(DestinationFrame.RoundEnd):
                    m.HandleRoundEnd(1, now);
                    break;
                case DestEvent.Vcpu when Frame(DestinationFrame.VcpuState):
                    m.HandleVcpuState(0, now);
                    break;
                case DestEvent.Device when Frame(DestinationFrame.DeviceState):
                    m.HandleDeviceState(now);
                    break;
                case DestEvent.Pending when Frame(DestinationFrame.PendingPages):
                    m.HandlePendingPages(4, 4, now);
                    break;
                case DestEvent.Switchover when Frame(DestinationFrame.Switchover):
                    m.HandleSwitchover(new SwitchoverClaim(0xAA, 10, 256, 1), now);
                    break;
                case DestEvent.Commit when Frame(DestinationFrame.Commit):
                    committed = true;
                    m.HandleCommit(now);
                    break;
                case DestEvent.PostCopyEnd when Frame(DestinationFrame.PostCopyEnd):
                    m.HandlePostCopyEnd(10, 0xAA, now);
                    break;
                case DestEvent.Abort when Frame(DestinationFrame.Abort):
                    m.HandleAbort("stop", now);
                    break;
                case DestEvent.Broken:
                    m.HandleLinkBroken(MigrationFailure.PeerDisconnected, "gone", now);
                    if (m.Phase == DestinationPhase.PostCopyPaused && finishHonestly)
                    {
                        Drain();
                        m.HandleSourceReconnected(now);
                    }
                    break;
                case DestEvent.BrokenBadly:
                    m.HandleLinkBroken(MigrationFailure.ProtocolViolation, "garbage", now);
                    break;
                case DestEvent.VcpuFailure when m.Phase.VmRunsHere():
                    m.HandleVcpuFailure("page 1 did not arrive", timedOut: true, now);
                    break;
                case DestEvent.Timeout:
                    if (m.NextTimeout() is { } at)
                    {
                        now = at;
                        m.HandleTimeout(now);
                    }
                    break;
                case DestEvent.Cancel:
                    m.HandleCancel(now);
                    break;
            }
            Drain();
        }
        // However the sequence stopped, a silent or vanished source ends it.
        if (m.Succeeded is null)
        {
            m.HandleLinkBroken(MigrationFailure.PeerDisconnected, "gone for good", now);
            Drain();
            if (m.NextTimeout() is { } at)
            {
                now = at;
                m.HandleTimeout(now);
            }
            Drain();
        }
        Assert.NotNull(m.Succeeded);
        Assert.True(m.IsFinished);
        Assert.True(m.Phase.IsFinal());
        if (m.Succeeded == true)
        {
            Assert.True(committed && verdictMatched);
            Assert.Contains(log, c => c.Kind == DestinationCommandKind.SendResumed);
            if (m.IsPostCopy)
            {
                int verdict = log.FindLastIndex(c => c.Kind == DestinationCommandKind.SendPostCopyVerdict);
                Assert.True(verdict >= 0 && log[verdict].Verdict.DigestMatches);
                Assert.Equal(DestinationCommandKind.EndPostCopy, log[^1].Kind);
            }
        }
        else
        {
            Assert.Equal(DestinationCommandKind.Discard, log[^1].Kind);
            Assert.DoesNotContain(log, c => c.Kind == DestinationCommandKind.EndPostCopy);
        }
    }
}
