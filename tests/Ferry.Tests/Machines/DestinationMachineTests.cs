using Ferry.Core.Machines.Destination;
using Ferry.Core.Migration;

namespace Ferry.Tests.Machines;

/// <summary>The destination machine driven by scripted frames on a virtual clock: admission, frame order, verdicts, the commit, post-copy recovery and failures.</summary>
public sealed class DestinationMachineTests
{
    private const long Memory = 1L << 20;
    private const long Pages = Memory / 4096;

    private sealed class Dest
    {
        public readonly List<DestinationCommand> Commands = [];
        public TimeSpan Now = TimeSpan.FromSeconds(10);

        public Dest(bool canRecover = false, long maxMemory = 1L << 30)
        {
            M = new DestinationMigrationMachine(new DestinationMachineSettings
            {
                MaxMemoryBytes = maxMemory,
                CanRecover = canRecover,
                RecoveryTimeout = TimeSpan.FromSeconds(3),
                SettleTimeout = TimeSpan.FromSeconds(5),
            }, Now);
        }

        public DestinationMigrationMachine M { get; }

        public IEnumerable<DestinationCommandKind> Kinds => Commands.Select(c => c.Kind);

        /// <summary>Takes every queued command.</summary>
        public List<DestinationCommand> Drain()
        {
            var got = new List<DestinationCommand>();
            while (M.TryPoll(Now, out DestinationCommand c))
            {
                got.Add(c);
                Commands.Add(c);
            }
            return got;
        }

        public bool Frame(DestinationFrame f) => M.HandleFrame(f, f.ToString(), Now);

        public void Offer(OfferCheck? check = null)
        {
            Assert.True(Frame(DestinationFrame.Offer));
            M.HandleOffer(check ?? new OfferCheck(Memory, 1), Now);
        }

        /// <summary>An honest pre-copy up to the switchover claim (pages, state, optionally a pending map).</summary>
        public void ReceiveUpToSwitchover(long pagesSent, bool postCopy = false, bool vcpu = true, bool device = true)
        {
            Offer();
            Assert.True(Frame(DestinationFrame.PageBatch));
            Assert.True(Frame(DestinationFrame.RoundEnd));
            M.HandleRoundEnd(1, Now);
            if (vcpu)
            {
                Assert.True(Frame(DestinationFrame.VcpuState));
                M.HandleVcpuState(0, Now);
            }
            if (device)
            {
                Assert.True(Frame(DestinationFrame.DeviceState));
                M.HandleDeviceState(Now);
            }
            if (postCopy)
            {
                Assert.True(Frame(DestinationFrame.PendingPages));
                M.HandlePendingPages(4, 4, Now);
            }
            Assert.True(Frame(DestinationFrame.Switchover));
            M.HandleSwitchover(new SwitchoverClaim(0xAB, pagesSent, Pages, 1), Now);
        }

        public void Commit()
        {
            Assert.True(Frame(DestinationFrame.Commit));
            M.HandleCommit(Now);
            Assert.Contains(Drain(), c => c.Kind == DestinationCommandKind.StartVm);
            M.HandleVmRunning(Now);
        }
    }

    [Fact]
    public void An_honest_pre_copy_is_admitted_verified_and_started_only_on_the_commit()
    {
        var d = new Dest();
        d.ReceiveUpToSwitchover(pagesSent: 10);
        var cmds = d.Drain();
        Assert.Equal([DestinationCommandKind.AcceptOffer, DestinationCommandKind.AckRound, DestinationCommandKind.AwaitPages], cmds.Select(c => c.Kind));
        Assert.Equal(1, cmds[1].Value);
        Assert.Equal(10, cmds[2].Value);
        Assert.Equal(DestinationPhase.Switchover, d.M.Phase);
        d.Now += TimeSpan.FromMilliseconds(2);
        d.M.HandlePagesSettled(received: 10, missing: 0, digest: 0xAB, d.Now);
        DestinationCommand verdict = Assert.Single(d.Drain());
        Assert.Equal(DestinationCommandKind.SendSwitchoverVerdict, verdict.Kind);
        Assert.True(verdict.Verdict.DigestMatches);
        Assert.Equal(DestinationPhase.AwaitingCommit, d.M.Phase);
        Assert.DoesNotContain(DestinationCommandKind.StartVm, d.Kinds);
        d.Now += TimeSpan.FromMilliseconds(1);
        d.Commit();
        DestinationCommand resumed = Assert.Single(d.Drain());
        Assert.Equal(DestinationCommandKind.SendResumed, resumed.Kind);
        Assert.Equal(3, resumed.Milliseconds, 6);
        Assert.True(d.M.Succeeded);
        Assert.Equal(DestinationPhase.Completed, d.M.Phase);
    }

    [Theory]
    [InlineData(2L << 20, null, null, null, "offer refused: VM needs 2097152 bytes of RAM; this agent accepts at most 1048576")]
    [InlineData(1L << 20, "source vCPU state is 8 bytes; this agent expects 160", null, null, "offer refused: source vCPU state is 8 bytes")]
    [InlineData(1L << 20, null, "a VM with id 'x' already runs on this agent", null, "offer refused: a VM with id 'x' already runs on this agent")]
    [InlineData(1L << 20, null, null, "page install uffd: no userfaultfd here", "page install uffd: no userfaultfd here")]
    public void An_offer_it_cannot_take_is_refused_and_the_source_told_why(long memory, string? state, string? admission, string? install, string error)
    {
        var d = new Dest(maxMemory: 1L << 20);
        d.Offer(new OfferCheck(memory, 1, StateMismatch: state, AdmissionRefusal: admission, InstallRefusal: install));
        Assert.False(d.M.Succeeded);
        Assert.Equal(MigrationFailure.Refused, d.M.Failure);
        Assert.StartsWith(error, d.M.Error);
        var cmds = d.Drain();
        Assert.Equal([DestinationCommandKind.TellSource, DestinationCommandKind.Discard], cmds.Select(c => c.Kind));
        Assert.DoesNotContain(DestinationCommandKind.AcceptOffer, d.Kinds);
    }

    [Theory]
    [InlineData(DestinationFrame.PageBatch, "expected Offer, got PageBatch")]
    [InlineData(DestinationFrame.Commit, "expected Offer, got Commit")]
    public void A_first_frame_that_is_not_an_offer_fails(DestinationFrame frame, string message)
    {
        var d = new Dest();
        Assert.False(d.Frame(frame));
        Assert.Equal(MigrationFailure.ProtocolViolation, d.M.Failure);
        Assert.Equal(message, d.M.Error);
        Assert.Contains(DestinationCommandKind.TellSource, d.Drain().Select(c => c.Kind));
    }

    [Theory]
    [InlineData(DestinationFrame.Commit, "unexpected Commit frame before switchover")]
    [InlineData(DestinationFrame.PostCopyEnd, "unexpected PostCopyEnd frame before switchover")]
    [InlineData(DestinationFrame.Offer, "unexpected Offer frame before switchover")]
    public void Frames_out_of_order_before_the_switch_fail_and_start_nothing(DestinationFrame frame, string message)
    {
        var d = new Dest();
        d.Offer();
        Assert.False(d.Frame(frame));
        Assert.Equal(message, d.M.Error);
        d.Drain();
        Assert.DoesNotContain(DestinationCommandKind.StartVm, d.Kinds);
        Assert.Equal(DestinationCommandKind.Discard, d.Kinds.Last());
    }

    [Fact]
    public void Pages_after_the_verdict_and_before_the_commit_are_refused()
    {
        var d = new Dest();
        d.ReceiveUpToSwitchover(5);
        d.M.HandlePagesSettled(5, 0, 0xAB, d.Now);
        Assert.False(d.Frame(DestinationFrame.PageBatch));
        Assert.Equal("expected Commit, got PageBatch", d.M.Error);
        d.Drain();
        Assert.DoesNotContain(DestinationCommandKind.StartVm, d.Kinds);
    }

    [Theory]
    [InlineData(false, true, 5, 5, 0xAB, "vCPU state missing")]
    [InlineData(true, false, 5, 5, 0xAB, "device state missing")]
    [InlineData(true, true, 6, 5, 0xAB, "source sent 6 pages, destination received 5")]
    [InlineData(true, true, 5, 5, 0xAC, "page contents differ")]
    public void A_switchover_that_does_not_add_up_is_refused_with_the_reason(bool vcpu, bool device, long claimed, long received, long digest, string problem)
    {
        var d = new Dest();
        d.ReceiveUpToSwitchover(claimed, vcpu: vcpu, device: device);
        d.Drain();
        d.M.HandlePagesSettled(received, 0, (ulong)digest, d.Now);
        var cmds = d.Drain();
        Assert.Equal(DestinationCommandKind.SendSwitchoverVerdict, cmds[0].Kind);
        Assert.False(cmds[0].Verdict.DigestMatches);
        Assert.Equal(problem, cmds[0].Verdict.Problem);
        Assert.Equal(MigrationFailure.DigestMismatch, d.M.Failure);
        Assert.StartsWith($"switchover refused: {problem}", d.M.Error);
        Assert.Equal([DestinationCommandKind.SendSwitchoverVerdict, DestinationCommandKind.TellSource, DestinationCommandKind.Discard], cmds.Select(c => c.Kind));
    }

    [Fact]
    public void Pages_that_never_settle_end_the_switchover_at_the_deadline()
    {
        var d = new Dest();
        d.ReceiveUpToSwitchover(5);
        d.Drain();
        Assert.Equal(d.Now + TimeSpan.FromSeconds(5), d.M.NextTimeout());
        d.Now += TimeSpan.FromSeconds(5);
        d.M.HandleTimeout(d.Now);
        Assert.Equal(MigrationFailure.Timeout, d.M.Failure);
        Assert.Contains("did not all arrive within 5 s", d.M.Error);
    }

    private static Dest InPostCopy(bool canRecover)
    {
        var d = new Dest(canRecover);
        d.ReceiveUpToSwitchover(5, postCopy: true);
        d.M.HandlePagesSettled(5, 0, 0xAB, d.Now);
        d.Commit();
        d.M.HandlePostCopyProgress(100);
        Assert.Equal(DestinationPhase.PostCopy, d.M.Phase);
        Assert.True(d.M.IsPostCopy);
        d.Drain();
        return d;
    }

    [Fact]
    public void Post_copy_ends_when_every_page_is_here_and_the_digests_agree()
    {
        Dest d = InPostCopy(canRecover: false);
        Assert.True(d.Frame(DestinationFrame.PageBatch));
        d.M.HandlePostCopyProgress(0);
        Assert.True(d.Frame(DestinationFrame.PostCopyEnd));
        d.M.HandlePostCopyEnd(105, 0xCD, d.Now);
        Assert.Equal([DestinationCommandKind.AwaitPages], d.Drain().Select(c => c.Kind));
        d.M.HandlePagesSettled(105, 0, 0xCD, d.Now);
        Assert.Equal([DestinationCommandKind.SendPostCopyVerdict, DestinationCommandKind.EndPostCopy], d.Drain().Select(c => c.Kind));
        Assert.True(d.M.Succeeded);
    }

    [Fact]
    public void Post_copy_with_pages_still_missing_at_its_end_fails_and_discards_the_vm()
    {
        Dest d = InPostCopy(canRecover: false);
        Assert.True(d.Frame(DestinationFrame.PostCopyEnd));
        d.M.HandlePostCopyEnd(105, 0xCD, d.Now);
        d.Drain();
        d.Now += TimeSpan.FromSeconds(1.5);
        d.M.HandlePagesSettled(60, 45, 0xCD, d.Now);
        Assert.False(d.M.Succeeded);
        Assert.StartsWith("post-copy failed after the VM resumed here: post-copy ended with 45 pages never arrived", d.M.Error);
        Assert.Contains("The VM could not be completed: 45 pages (0.2 MiB) never arrived from the source; it ran here for 1.5 s", d.M.Error);
        Assert.Equal(DestinationCommandKind.Discard, d.Drain().Last().Kind);
        Assert.DoesNotContain(DestinationCommandKind.EndPostCopy, d.Kinds);
    }

    [Fact]
    public void A_broken_post_copy_link_pauses_and_a_reconnection_resumes_with_the_missing_map()
    {
        Dest d = InPostCopy(canRecover: true);
        d.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "connection lost", d.Now);
        Assert.Equal(DestinationPhase.PostCopyPaused, d.M.Phase);
        Assert.Equal([DestinationCommandKind.PausePageWaits, DestinationCommandKind.AwaitSource], d.Drain().Select(c => c.Kind));
        d.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "again", d.Now);
        Assert.Null(d.M.Succeeded);
        d.M.HandleSourceReconnected(d.Now);
        Assert.Equal(DestinationPhase.PostCopy, d.M.Phase);
        Assert.Equal([DestinationCommandKind.ResumeOnNewConnection], d.Drain().Select(c => c.Kind));
        Assert.Equal(1, d.M.Recoveries);
    }

    [Fact]
    public void A_source_that_never_reconnects_ends_the_pause_at_the_recovery_timeout()
    {
        Dest d = InPostCopy(canRecover: true);
        d.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "connection lost", d.Now);
        d.Drain();
        d.Now += TimeSpan.FromSeconds(3);
        d.M.HandleTimeout(d.Now);
        Assert.False(d.M.Succeeded);
        Assert.Contains("link to the source broke (connection lost) and the source did not reconnect within 3 s", d.M.Error);
        Assert.Contains("100 pages", d.M.Error);
        Assert.Equal([DestinationCommandKind.Discard], d.Drain().Select(c => c.Kind));
    }

    [Theory]
    [InlineData(MigrationFailure.ProtocolViolation)]
    [InlineData(MigrationFailure.Aborted)]
    public void Only_a_disconnect_is_worth_waiting_for(MigrationFailure kind)
    {
        Dest d = InPostCopy(canRecover: true);
        d.M.HandleLinkBroken(kind, "bad", d.Now);
        Assert.False(d.M.Succeeded);
        Assert.Equal(kind, d.M.Failure);
    }

    [Fact]
    public void A_vcpu_whose_page_wait_ran_out_ends_post_copy_as_a_timeout()
    {
        Dest d = InPostCopy(canRecover: true);
        d.M.HandleVcpuFailure("page 7 did not arrive within 0.3 s", timedOut: true, d.Now);
        Assert.Equal(MigrationFailure.Timeout, d.M.Failure);
        Assert.Contains("page 7 did not arrive within 0.3 s", d.M.Error);
    }

    [Theory]
    [InlineData(DestinationPhase.Receiving)]
    [InlineData(DestinationPhase.Switchover)]
    [InlineData(DestinationPhase.AwaitingCommit)]
    public void A_cut_link_before_the_commit_discards_everything_and_starts_nothing(DestinationPhase phase)
    {
        var d = new Dest(canRecover: true);
        d.ReceiveUpToSwitchover(5);
        if (phase == DestinationPhase.Receiving)
        {
            d = new Dest(canRecover: true);
            d.Offer();
        }
        if (phase == DestinationPhase.AwaitingCommit)
        {
            d.M.HandlePagesSettled(5, 0, 0xAB, d.Now);
        }
        Assert.Equal(phase, d.M.Phase);
        d.M.HandleLinkBroken(MigrationFailure.PeerDisconnected, "gone", d.Now);
        Assert.False(d.M.Succeeded);
        d.Drain();
        Assert.DoesNotContain(DestinationCommandKind.StartVm, d.Kinds);
        Assert.DoesNotContain(DestinationCommandKind.TellSource, d.Kinds);
        Assert.Equal(DestinationCommandKind.Discard, d.Kinds.Last());
    }

    [Fact]
    public void An_abort_from_the_source_fails_with_its_reason()
    {
        var d = new Dest();
        d.Offer();
        Assert.True(d.Frame(DestinationFrame.Abort));
        d.M.HandleAbort("cancelled by request", d.Now);
        Assert.Equal(MigrationFailure.Aborted, d.M.Failure);
        Assert.Equal("source aborted: cancelled by request", d.M.Error);
        Assert.DoesNotContain(DestinationCommandKind.TellSource, d.Drain().Select(c => c.Kind));
    }
}
