using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;

namespace Ferry.Tests.Machines;

/// <summary>
/// The source machine driven by scripted events on a virtual clock: every technique's sequence,
/// the commit point, cancels and broken links in every phase, timeouts, post-copy's demand and
/// push share, and recovery with backoff and pause limits. No socket, no thread.
/// </summary>
public sealed class SourceMachineTests
{
    private static SourceWorld World(MigrationTechnique t, long bandwidth = 100L << 20, bool canReconnect = false, int? maxRounds = 10) =>
        new(SourceWorld.Options(t, bandwidth, maxRounds), canReconnect: canReconnect);

    private static SourceReportFacts Facts => new()
    {
        MigrationId = "m-1",
        StartedAt = DateTimeOffset.UnixEpoch,
        Source = new HostInfo { HostName = "src" },
        DestinationEndpoint = new HostInfo { Endpoint = "http://dest" },
        Vm = new VmInfo { Id = "vm" },
        DirtyLog = new DirtyLogInfo { Backend = "software" },
    };

    [Fact]
    public void Pre_copy_runs_rounds_until_the_policy_stops_then_drains_pauses_and_commits()
    {
        SourceWorld w = World(MigrationTechnique.PreCopy).RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.Equal(
            [MigrationPhase.Setup, MigrationPhase.PreCopy, MigrationPhase.Draining, MigrationPhase.Pausing, MigrationPhase.StopAndCopy,
                MigrationPhase.State, MigrationPhase.Switchover, MigrationPhase.Commit, MigrationPhase.Completed], w.Phases);
        var kinds = w.Kinds.ToList();
        Assert.Equal(SourceCommandKind.SendOffer, kinds[0]);
        Assert.Equal(SourceCommandKind.StartDirtyLog, kinds[1]);
        // Pause only after every live round, commit only after the verdict, rehash last.
        Assert.True(kinds.IndexOf(SourceCommandKind.PauseVm) > kinds.LastIndexOf(SourceCommandKind.HarvestDirtyLog));
        Assert.True(kinds.IndexOf(SourceCommandKind.SendCommit) > kinds.IndexOf(SourceCommandKind.SendSwitchover));
        Assert.Equal(SourceCommandKind.VerifySourceCopy, kinds[^1]);
        Assert.DoesNotContain(SourceCommandKind.ResumeVm, kinds);
        // Rounds halve (3000, 1500, 750 …) until what is left fits 300 ms at the measured rate; the final round is the stop-and-copy.
        Assert.True(w.M.Rounds.Count >= 2);
        Assert.All(w.M.Rounds.SkipLast(1), r => Assert.Equal("live", r.Kind));
        Assert.Equal("stop-and-copy", w.M.Rounds[^1].Kind);
        Assert.StartsWith("converged", w.M.StopReason);
    }

    [Fact]
    public void The_report_is_built_from_the_machine_timeline()
    {
        SourceWorld w = World(MigrationTechnique.PreCopy).RunToEnd();
        MigrationReport r = MigrationReportBuilder.Build(w.M, Facts, w.Now);
        SourceTimeline t = w.M.Timeline;
        Assert.Equal(MigrationOutcome.Completed, r.Outcome);
        Assert.Equal((t.PausedAt!.Value - t.Start).TotalMilliseconds, r.Timing.PreparationMs, 6);
        Assert.Equal((t.ResumedAt!.Value - t.PausedAt.Value).TotalMilliseconds, r.Timing.DowntimeMs, 6);
        Assert.Equal(r.Timing.DowntimeMs, r.Timing.DowntimeParts.FinalPagesMs + r.Timing.DowntimeParts.StateMs + r.Timing.DowntimeParts.SwitchoverMs, 6);
        Assert.Equal(w.M.Counters.PagesSent, r.Pages.Sent);
        Assert.Equal(w.M.Counters.WireBytes, r.Pages.WireBytes);
        Assert.Equal(w.M.Rounds.Count, r.Rounds.Count);
        Assert.Equal("dest", r.Destination.HostName);
        Assert.True(r.Verification.DigestsMatch);
        Assert.Equal("0000000000001234", r.Verification.SourceDigest);
    }

    [Fact]
    public void Stop_and_copy_pauses_first_and_sends_everything_once()
    {
        SourceWorld w = World(MigrationTechnique.StopAndCopy).RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.Equal(SourceCommandKind.PauseVm, w.Kinds.ElementAt(1));
        Assert.DoesNotContain(SourceCommandKind.StartDirtyLog, w.Kinds);
        Assert.Single(w.M.Rounds);
        Assert.Equal(w.Populated, w.M.Counters.PagesSent);
        Assert.Equal(w.GuestPages - w.Populated, w.M.Counters.NeverWrittenSkipped);
    }

    [Fact]
    public void Post_copy_switches_at_once_and_completes_only_when_the_destination_confirms_every_page()
    {
        SourceWorld w = World(MigrationTechnique.PostCopy).RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.Equal(
            [MigrationPhase.Setup, MigrationPhase.Pausing, MigrationPhase.State, MigrationPhase.Switchover, MigrationPhase.Commit,
                MigrationPhase.PostCopy, MigrationPhase.PostCopyConfirm, MigrationPhase.Completed], w.Phases);
        Assert.True(w.M.PostCopyUsed);
        Assert.Equal(w.Populated, w.M.PostCopyPending);
        Assert.Equal(0, w.M.PostCopyRemaining);
        Assert.Equal(w.Populated, w.M.PushPages);
        Assert.NotNull(w.M.Timeline.CompletedAt);
        var kinds = w.Kinds.ToList();
        Assert.True(kinds.IndexOf(SourceCommandKind.SendPendingMap) < kinds.IndexOf(SourceCommandKind.SendSwitchover));
        Assert.Equal("post-copy", w.M.Rounds[^1].Kind);
    }

    [Fact]
    public void Hybrid_runs_its_pre_copy_rounds_then_switches()
    {
        var w = new SourceWorld(SourceWorld.Options(MigrationTechnique.Hybrid) with { HybridRounds = 2 });
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.Equal(2, w.M.PreCopyRounds);
        Assert.Equal(["live", "live", "post-copy"], w.M.Rounds.Select(r => r.Kind));
        Assert.Contains(MigrationPhase.Draining, w.Phases);
    }

    [Fact]
    public void Auto_switches_to_post_copy_when_the_guest_dirties_faster_than_the_link_sends()
    {
        SourceWorld w = World(MigrationTechnique.Auto, bandwidth: 8L << 20);
        // Every round the guest dirties twice what was sent: pre-copy can never converge.
        w.Dirtied = (_, sent) => Math.Min(w.GuestPages, 2 * sent);
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.True(w.M.PostCopyUsed);
        Assert.Contains("dirty rate", w.M.StopReason);
    }

    [Fact]
    public void A_policy_abort_ends_before_the_pause_and_the_source_runs_on()
    {
        var options = SourceWorld.Options(MigrationTechnique.PreCopy) with { PreCopy = new() { Timeout = TimeSpan.FromMilliseconds(50), DowntimeLimit = null } };
        var w = new SourceWorld(options) { Dirtied = (_, sent) => sent };
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Equal(MigrationFailure.Aborted, w.M.Failure);
        Assert.StartsWith("policy aborted: timeout", w.M.Error);
        Assert.DoesNotContain(SourceCommandKind.PauseVm, w.Kinds);
        Assert.Contains(SourceCommandKind.ResumeVm, w.Kinds);
        Assert.Contains(SourceCommandKind.TellDestination, w.Kinds);
    }

    public static TheoryData<MigrationTechnique, MigrationPhase> PhasesBeforeCommit()
    {
        var data = new TheoryData<MigrationTechnique, MigrationPhase>();
        foreach (MigrationPhase p in new[] { MigrationPhase.Setup, MigrationPhase.PreCopy, MigrationPhase.Draining, MigrationPhase.Pausing,
                     MigrationPhase.StopAndCopy, MigrationPhase.State, MigrationPhase.Switchover })
        {
            data.Add(MigrationTechnique.PreCopy, p);
        }
        data.Add(MigrationTechnique.PostCopy, MigrationPhase.State);
        data.Add(MigrationTechnique.Hybrid, MigrationPhase.Draining);
        return data;
    }

    /// <summary>Runs until the machine enters <paramref name="phase"/>, the destination answering by hand all but what that phase waits for.</summary>
    private static SourceWorld StopIn(MigrationTechnique technique, MigrationPhase phase, bool canReconnect = false, TimeSpan? stallTimeout = null)
    {
        SourceWorld w = stallTimeout is { } stall
            ? new SourceWorld(SourceWorld.Options(technique) with { StallTimeout = stall }, canReconnect: canReconnect)
            : World(technique, canReconnect: canReconnect);
        w.DestinationAnswers = false;
        w.Intercept = c =>
        {
            w.Execute(c);
            AnswerFor(w, c, phase);
            return true;
        };
        Assert.True(w.RunUntil(x => x.M.Phase == phase), $"never reached {phase}");
        return w;
    }

    /// <summary>The destination's answers, given by hand, except the one the phase under test waits for.</summary>
    private static void AnswerFor(SourceWorld w, SourceCommand c, MigrationPhase stopIn)
    {
        switch (c.Kind)
        {
            case SourceCommandKind.SendOffer when stopIn != MigrationPhase.Setup:
                w.M.HandleOfferAccepted(new OfferAcceptance(), w.Now);
                break;
            case SourceCommandKind.SendPages when stopIn != MigrationPhase.Draining:
                w.M.HandleRoundAcked(c.Round, w.Now);
                break;
            case SourceCommandKind.SendSwitchover when stopIn != MigrationPhase.Switchover:
                w.M.HandleSwitchoverVerdict(new SwitchoverVerdict { DigestMatches = true }, w.Now);
                break;
            case SourceCommandKind.SendCommit when stopIn != MigrationPhase.Commit:
                w.M.HandleResumed(1, w.Now);
                break;
            case SourceCommandKind.SendPostCopyEnd when stopIn != MigrationPhase.PostCopyConfirm:
                w.M.HandlePostCopyComplete(new PostCopyVerdict { DigestMatches = true }, w.Now);
                break;
        }
    }

    [Theory]
    [MemberData(nameof(PhasesBeforeCommit))]
    public void A_cancel_before_the_commit_ends_the_migration_and_the_source_runs_on(MigrationTechnique technique, MigrationPhase phase)
    {
        SourceWorld w = StopIn(technique, phase);
        w.M.HandleCancel(w.Now);
        w.Intercept = null;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Cancelled, w.M.Outcome);
        Assert.Equal(MigrationPhase.Cancelled, w.M.Phase);
        Assert.Equal("cancelled by request", w.M.Error);
        Assert.Contains(SourceCommandKind.ResumeVm, w.Kinds);
        Assert.DoesNotContain(SourceCommandKind.SendCommit, w.Kinds);
        Assert.False(w.M.Committed);
    }

    [Theory]
    [MemberData(nameof(PhasesBeforeCommit))]
    public void A_broken_link_before_the_commit_fails_and_the_source_runs_on(MigrationTechnique technique, MigrationPhase phase)
    {
        SourceWorld w = StopIn(technique, phase, canReconnect: true);
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "connection to destination lost", w.Now);
        w.Intercept = null;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Equal(MigrationFailure.PeerDisconnected, w.M.Failure);
        Assert.Contains(SourceCommandKind.ResumeVm, w.Kinds);
        Assert.DoesNotContain(SourceCommandKind.Reconnect, w.Kinds);
    }

    [Fact]
    public void After_the_commit_a_cancel_cannot_apply_and_a_lost_confirmation_keeps_the_source_paused()
    {
        SourceWorld w = StopIn(MigrationTechnique.PreCopy, MigrationPhase.Commit);
        Assert.True(w.M.Committed);
        w.M.HandleCancel(w.Now);
        Assert.Null(w.M.Outcome);
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "connection reset", w.Now);
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Unconfirmed, w.M.Outcome);
        Assert.Contains("commit was sent but the destination did not confirm resuming (connection reset)", w.M.Error);
        Assert.DoesNotContain(SourceCommandKind.ResumeVm, w.Kinds);
        Assert.DoesNotContain(SourceCommandKind.TellDestination, w.Kinds);
    }

    [Theory]
    [InlineData(MigrationPhase.Setup, "destination sent no offer acceptance within 60 s", 60)]
    [InlineData(MigrationPhase.Draining, "destination stalled: nothing moved for 10 s (draining, round", 10)]
    [InlineData(MigrationPhase.Switchover, "destination stalled: nothing moved for 10 s (switchover", 10)]
    public void Every_wait_for_the_destination_has_a_deadline(MigrationPhase phase, string message, int seconds)
    {
        SourceWorld w = StopIn(MigrationTechnique.PreCopy, phase);
        w.Intercept = c => { w.Execute(c); AnswerFor(w, c, phase); return true; };
        TimeSpan at = w.Now;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Equal(MigrationFailure.Timeout, w.M.Failure);
        Assert.Contains(message, w.M.Error);
        Assert.InRange(w.Now - at, TimeSpan.FromSeconds(seconds), TimeSpan.FromSeconds(seconds + 1));
        Assert.Contains(SourceCommandKind.ResumeVm, w.Kinds);
    }

    [Fact]
    public void A_destination_that_stops_confirming_after_the_commit_leaves_the_migration_unconfirmed_at_the_stall_timeout()
    {
        SourceWorld w = StopIn(MigrationTechnique.PreCopy, MigrationPhase.Commit);
        w.Intercept = c => { w.Execute(c); AnswerFor(w, c, MigrationPhase.Commit); return true; };
        TimeSpan at = w.Now;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Unconfirmed, w.M.Outcome);
        Assert.Contains("destination stalled", w.M.Error);
        Assert.InRange(w.Now - at, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(11));
        Assert.DoesNotContain(SourceCommandKind.ResumeVm, w.Kinds);
    }

    [Fact]
    public void The_stall_watch_counts_from_the_last_thing_that_moved_not_from_the_start_of_the_wait()
    {
        var options = SourceWorld.Options(MigrationTechnique.PreCopy) with { StallTimeout = TimeSpan.FromSeconds(2) };
        var w = new SourceWorld(options);
        w.DestinationAnswers = false;
        w.Intercept = c => { w.Execute(c); AnswerFor(w, c, MigrationPhase.Draining); return true; };
        Assert.True(w.RunUntil(x => x.M.Phase == MigrationPhase.Draining));
        // Acknowledgements of earlier rounds keep arriving: each moves the watch on.
        for (int i = 0; i < 5; i++)
        {
            w.Advance(TimeSpan.FromSeconds(1.5));
            w.M.HandleTimeout(w.Now);
            w.M.HandleRoundAcked(w.M.Round - 1, w.Now);
            Assert.Null(w.M.Outcome);
        }
        w.Advance(TimeSpan.FromSeconds(2));
        w.M.HandleTimeout(w.Now);
        Assert.Equal(MigrationFailure.Timeout, w.M.Failure);
    }

    [Fact]
    public void A_write_that_gives_up_after_the_stall_timeout_is_reported_as_a_stall_and_an_early_one_as_a_lost_link()
    {
        SourceWorld w = StopIn(MigrationTechnique.PreCopy, MigrationPhase.Draining);
        w.Advance(TimeSpan.FromSeconds(3));
        w.M.HandleFailure(MigrationFailure.PeerDisconnected, "connection reset", w.Now);
        Assert.Equal(MigrationFailure.PeerDisconnected, w.M.Failure);

        SourceWorld stalled = StopIn(MigrationTechnique.PreCopy, MigrationPhase.Draining);
        stalled.Advance(TimeSpan.FromSeconds(10));
        stalled.M.HandleFailure(MigrationFailure.PeerDisconnected, "connection timed out", stalled.Now);
        Assert.Equal(MigrationFailure.Timeout, stalled.M.Failure);
        Assert.StartsWith("destination stalled: nothing moved for 10 s (draining", stalled.M.Error);
        Assert.Contains("connection timed out", stalled.M.Error);
    }

    [Fact]
    public void A_wait_the_bandwidth_limit_imposes_is_not_a_stall()
    {
        // 64 KiB/s, the lowest limit allowed: one full batch frame (~1 MiB) is a 16 s wait, past the 10 s stall timeout.
        SourceWorld w = World(MigrationTechnique.StopAndCopy, bandwidth: 64 << 10).RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.True(w.Now > TimeSpan.FromSeconds(150));
    }

    [Fact]
    public void A_stall_timeout_that_is_not_positive_is_refused()
    {
        var options = SourceWorld.Options(MigrationTechnique.PreCopy) with { StallTimeout = TimeSpan.Zero };
        Assert.Throws<ArgumentOutOfRangeException>(() => new SourceWorld(options));
    }

    [Fact]
    public void A_cancel_after_the_verdict_but_before_the_commit_is_written_still_resumes_the_source()
    {
        SourceWorld w = StopIn(MigrationTechnique.PreCopy, MigrationPhase.Switchover);
        w.M.HandleSwitchoverVerdict(new SwitchoverVerdict { DigestMatches = true }, w.Now);
        Assert.True(w.M.TryPoll(w.Now, out SourceCommand c));
        Assert.Equal(SourceCommandKind.SendCommit, c.Kind);
        // The commit write fails: it cannot have reached the destination whole.
        w.M.HandleFailure(MigrationFailure.PeerDisconnected, "broken pipe", w.Now);
        w.Intercept = null;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.False(w.M.Committed);
        Assert.Contains(SourceCommandKind.ResumeVm, w.Kinds);
    }

    [Fact]
    public void A_resume_confirmation_that_never_comes_ends_unconfirmed_after_its_deadline_when_the_stall_watch_is_longer()
    {
        SourceWorld w = StopIn(MigrationTechnique.PreCopy, MigrationPhase.Commit, stallTimeout: TimeSpan.FromSeconds(60));
        w.Intercept = c => { w.Execute(c); AnswerFor(w, c, MigrationPhase.Commit); return true; };
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Unconfirmed, w.M.Outcome);
        Assert.Contains("destination sent no resume confirmation within 30 s", w.M.Error);
    }

    [Fact]
    public void A_digest_mismatch_at_switchover_never_commits()
    {
        SourceWorld w = World(MigrationTechnique.PreCopy);
        w.SwitchoverMatches = false;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Equal(MigrationFailure.DigestMismatch, w.M.Failure);
        Assert.DoesNotContain(SourceCommandKind.SendCommit, w.Kinds);
        Assert.Contains(SourceCommandKind.ResumeVm, w.Kinds);
        Assert.Contains("memory digest mismatch at switchover: source 0000000000001234, destination 00000000000000ff", w.M.Error);
    }

    [Fact]
    public void A_digest_mismatch_after_post_copy_keeps_the_paused_copy_unconfirmed()
    {
        SourceWorld w = World(MigrationTechnique.PostCopy);
        w.PostCopyMatches = false;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Unconfirmed, w.M.Outcome);
        Assert.Equal(MigrationFailure.DigestMismatch, w.M.Failure);
        Assert.Contains("source keeps its paused copy", w.M.Error);
        Assert.DoesNotContain(SourceCommandKind.ResumeVm, w.Kinds);
    }

    [Fact]
    public void An_answer_nobody_asked_for_is_a_protocol_violation()
    {
        SourceWorld w = World(MigrationTechnique.PreCopy);
        w.RunUntil(x => x.M.Phase == MigrationPhase.PreCopy);
        w.M.HandleResumed(1, w.Now);
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Equal(MigrationFailure.ProtocolViolation, w.M.Failure);
        Assert.Contains("destination answered nothing (during precopy) with Resumed", w.M.Error);
    }

    [Fact]
    public void A_driver_that_reports_what_was_not_asked_is_a_bug_not_a_migration_failure()
    {
        SourceWorld w = World(MigrationTechnique.PreCopy);
        Assert.Throws<InvalidOperationException>(() => w.M.HandleDirtyHarvested(10, w.Now));
    }

    [Fact]
    public void Post_copy_answers_every_request_before_the_next_push_until_demand_had_a_push_batch()
    {
        SourceWorld w = World(MigrationTechnique.PostCopy, bandwidth: 4L << 20);
        w.RunUntil(x => x.M.Phase == MigrationPhase.PostCopy);
        // Three requests arrive: the next command answers them, not a push.
        for (int i = 0; i < 3; i++)
        {
            w.Requests.Enqueue(i);
        }
        w.M.HandlePageRequests(3, w.Now);
        Assert.True(w.M.TryPoll(w.Now, out SourceCommand c));
        Assert.Equal(SourceCommandKind.AnswerDemand, c.Kind);
        w.Execute(c);
        Assert.Equal(3, w.M.DemandPages);
        // Demand used 3 pages of the link: below a push batch, so the push waits out the pacing and new requests may still go first.
        Assert.False(w.M.TryPoll(w.Now, out _));
        w.Requests.Enqueue(7);
        w.M.HandlePageRequests(1, w.Now);
        Assert.True(w.M.TryPoll(w.Now, out c));
        Assert.Equal(SourceCommandKind.AnswerDemand, c.Kind);
        w.Execute(c);
        // Now demand gets 16 more pages: it has had its share, so the push goes next even if requests wait.
        for (int i = 0; i < 16; i++)
        {
            w.Requests.Enqueue(100 + i);
        }
        w.M.HandlePageRequests(16, w.Now);
        Assert.True(w.M.TryPoll(w.Now, out c));
        w.Execute(c);
        Assert.False(w.M.TryPoll(w.Now, out _));
        w.Requests.Enqueue(200);
        w.M.HandlePageRequests(1, w.Now);
        Assert.False(w.M.TryPoll(w.Now, out _), "demand had its share: it waits for the push");
        Assert.True(w.M.NextTimeout() > w.Now);
        w.Now = w.M.NextTimeout()!.Value;
        w.M.HandleTimeout(w.Now);
        Assert.True(w.M.TryPoll(w.Now, out c));
        Assert.Equal(SourceCommandKind.PushPages, c.Kind);
        Assert.Equal(SourceMigrationMachine.PushBatchPages, c.MaxPages);
    }

    [Fact]
    public void Post_copy_without_a_limit_samples_the_link_and_paces_itself_once_the_rate_settles()
    {
        var w = new SourceWorld(SourceWorld.Options(MigrationTechnique.PostCopy, bandwidth: 0), populated: 4000, canMeasureLink: true)
        {
            PagesPerSecond = 5_000,
        };
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.Contains(SourceCommandKind.SampleLink, w.Kinds);
        // The world's link moves 5,000 pages (of 4 KiB + headers) a second; the push paces at 90 % of it.
        double link = 5_000.0 * SourceWorld.PushFrameBytes / 16;
        Assert.InRange(w.M.AutoPacedBytesPerSecond / link, 0.8, 1.0);
    }

    [Fact]
    public void With_a_user_limit_post_copy_never_samples_the_link()
    {
        var w = new SourceWorld(SourceWorld.Options(MigrationTechnique.PostCopy), canMeasureLink: true).RunToEnd();
        Assert.DoesNotContain(SourceCommandKind.SampleLink, w.Kinds);
        Assert.Equal(0, w.M.AutoPacedBytesPerSecond);
    }

    private static SourceWorld InPostCopy(bool canReconnect = true)
    {
        SourceWorld w = World(MigrationTechnique.PostCopy, canReconnect: canReconnect);
        w.RunUntil(x => x.M.Phase == MigrationPhase.PostCopy && x.M.PostCopyRemaining < x.M.PostCopyPending);
        return w;
    }

    [Fact]
    public void A_broken_link_after_the_switch_pauses_and_reconnects_at_once_and_then_with_growing_gaps()
    {
        SourceWorld w = InPostCopy();
        var attempts = new List<TimeSpan>();
        w.Intercept = c =>
        {
            if (c.Kind != SourceCommandKind.Reconnect)
            {
                return false;
            }
            attempts.Add(w.Now);
            w.M.HandleReconnectFailed("connection refused", retryable: true, w.Now);
            return true;
        };
        TimeSpan broke = w.Now;
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "connection reset", w.Now);
        Assert.Equal(MigrationPhase.PostCopyPaused, w.M.Phase);
        w.RunUntil(x => x.M.AwaitingResume);
        Assert.Equal(broke, attempts[0]);
        var gaps = attempts.Zip(attempts.Skip(1), (a, b) => (b - a).TotalMilliseconds).ToList();
        Assert.Equal(100, gaps[0], 3);
        Assert.Equal(200, gaps[1], 3);
        Assert.Equal(400, gaps[2], 3);
        // The automatic window (2 s here) is spent: it now waits for a resume request, and says so.
        Assert.Contains("waiting for a resume request", w.M.PauseDetail(w.Now));
        Assert.True(w.Now - broke <= TimeSpan.FromSeconds(2.01));
        int before = attempts.Count;
        Assert.True(w.M.HandleResumeRequested(w.Now));
        w.Intercept = null;
        w.RunToEnd();
        // The resume request tried again at once, and that attempt succeeded.
        Assert.Equal(before + 1, w.Kinds.Count(k => k == SourceCommandKind.Reconnect));
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.Equal(1, w.M.Recoveries);
        Assert.False(w.M.HandleResumeRequested(w.Now), "nothing paused any more");
    }

    [Fact]
    public void Pages_lost_in_flight_are_pending_again_after_a_reconnection()
    {
        SourceWorld w = InPostCopy();
        long remaining = w.M.PostCopyRemaining;
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "reset", w.Now);
        Assert.True(w.M.TryPoll(w.Now, out SourceCommand c));
        Assert.Equal(SourceCommandKind.Reconnect, c.Kind);
        w.M.HandleReconnected(pagesLost: 5, w.Now);
        Assert.Equal(MigrationPhase.PostCopy, w.M.Phase);
        Assert.Equal(remaining + 5, w.M.PostCopyRemaining);
        Assert.Equal(5, w.M.PagesSentAgain);
    }

    [Fact]
    public void The_pause_limit_ends_a_paused_post_copy_and_the_source_keeps_its_copy()
    {
        SourceWorld w = InPostCopy();
        w.Intercept = c =>
        {
            if (c.Kind != SourceCommandKind.Reconnect)
            {
                return false;
            }
            w.M.HandleReconnectFailed("connection refused", retryable: true, w.Now);
            return true;
        };
        TimeSpan broke = w.Now;
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "reset", w.Now);
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Contains("post-copy stayed paused for 10 s (its pause limit)", w.M.Error);
        Assert.Contains("source keeps its paused copy", w.M.Error);
        Assert.Equal(TimeSpan.FromSeconds(10), w.Now - broke);
        Assert.Equal(TimeSpan.FromSeconds(10), w.M.PausedTotal);
        Assert.DoesNotContain(SourceCommandKind.ResumeVm, w.Kinds);
    }

    [Fact]
    public void A_cancel_abandons_a_paused_post_copy_and_one_during_post_copy_waits_for_the_next_pause()
    {
        SourceWorld w = InPostCopy();
        w.M.HandleCancel(w.Now);
        Assert.Null(w.M.Outcome);
        Assert.Equal(MigrationPhase.PostCopy, w.M.Phase);
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "reset", w.Now);
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Contains("post-copy abandoned by request while paused", w.M.Error);
    }

    [Fact]
    public void A_destination_that_refuses_the_reconnection_ends_post_copy()
    {
        SourceWorld w = InPostCopy();
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "reset", w.Now);
        Assert.True(w.M.TryPoll(w.Now, out SourceCommand c));
        w.M.HandleReconnectFailed("reconnected, but the destination no longer has this post-copy: gone", retryable: false, w.Now);
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.Contains("no longer has this post-copy", w.M.Error);
    }

    [Fact]
    public void Without_a_way_to_reconnect_a_broken_post_copy_fails_at_once()
    {
        SourceWorld w = InPostCopy(canReconnect: false);
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "reset", w.Now);
        Assert.Equal(MigrationOutcome.Failed, w.M.Outcome);
        Assert.StartsWith("post-copy failed after the VM resumed at the destination: reset", w.M.Error);
    }

    [Fact]
    public void A_break_after_the_last_page_went_out_ends_unconfirmed_when_recovery_gives_up()
    {
        SourceWorld w = World(MigrationTechnique.PostCopy, canReconnect: true);
        w.DestinationAnswers = false;
        w.Intercept = c => { w.Execute(c); AnswerFor(w, c, MigrationPhase.PostCopyConfirm); return true; };
        w.RunUntil(x => x.M.Phase == MigrationPhase.PostCopyConfirm);
        Assert.True(w.M.PostCopyEndSent);
        w.M.HandleLinkBroken(MigrationFailure.Aborted, "destination aborted: boom", w.Now);
        Assert.Equal(MigrationOutcome.Unconfirmed, w.M.Outcome);
    }

    [Fact]
    public void A_recovered_link_resends_post_copy_end_and_completes()
    {
        SourceWorld w = World(MigrationTechnique.PostCopy, canReconnect: true);
        w.DestinationAnswers = false;
        w.Intercept = c => { w.Execute(c); AnswerFor(w, c, MigrationPhase.PostCopyConfirm); return true; };
        w.RunUntil(x => x.M.Phase == MigrationPhase.PostCopyConfirm);
        w.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "reset", w.Now);
        w.Intercept = null;
        w.DestinationAnswers = true;
        w.RunToEnd();
        Assert.Equal(MigrationOutcome.Completed, w.M.Outcome);
        Assert.Equal(2, w.Kinds.Count(k => k == SourceCommandKind.SendPostCopyEnd));
    }
}
