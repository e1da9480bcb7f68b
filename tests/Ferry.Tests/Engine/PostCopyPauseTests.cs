using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Engine.Source;
using Ferry.Tests.Support;
using Ferry.Vm.Machine;

namespace Ferry.Tests.Engine;

/// <summary>
/// A post-copy whose link stays down past the automatic reconnection window: it is paused, not
/// failed; a resume request brings it back, a cancel abandons it, and meanwhile the destination's
/// vCPUs wait for their pages beyond their page timeout.
/// </summary>
public sealed class PostCopyPauseTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private static VirtualMachine Started(int seed)
    {
        var vm = VirtualMachine.Create(new VmConfig
        {
            Id = "pause",
            MemoryBytes = 64L << 20,
            Vcpus = 2,
            Workload = $"memtouch:rate=50000,wss=24MiB,pattern=uniform,content=random,seed={seed}",
        });
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 5_000, TimeSpan.FromSeconds(30), "the guest did some work");
        return vm;
    }

    private static readonly MigrationOptions Options = new()
    {
        Technique = MigrationTechnique.PostCopy,
        MaxBandwidthBytesPerSecond = 16L << 20,
        PostCopyRecoveryTimeout = TimeSpan.FromSeconds(1),
        PostCopyPauseLimit = TimeSpan.FromSeconds(45),
    };

    /// <summary>A page wait shorter than the pause: the VM survives only if waits stop counting while paused.</summary>
    private static DestinationLimits Limits(TimeSpan recovery) => new()
    {
        PostCopyRecovery = new PostCopyRecoveryRegistry(),
        PageWaitTimeout = TimeSpan.FromSeconds(1),
        RecoveryTimeout = recovery,
    };

    /// <summary>A migration on its own thread whose reconnections fail while <see cref="LinkDown"/> holds.</summary>
    private sealed class Run
    {
        private readonly Thread _thread;
        private LoopbackMigration.Outcome? _outcome;
        private Exception? _error;

        public Run(VirtualMachine vm, DestinationLimits limits, CancellationToken ct)
        {
            _thread = new Thread(() =>
            {
                try
                {
                    _outcome = LoopbackMigration.Run(vm, Options, s => new TruncatingStream(s, limit: 2L << 20), ct, limits: limits,
                        linkDown: () => LinkDown, onSource: s => Session = s);
                }
                catch (Exception ex)
                {
                    _error = ex;
                }
            }) { IsBackground = true };
            _thread.Start();
        }

        public volatile bool LinkDown = true;
        public volatile SourceMigration? Session;

        public SourceMigration WaitUntilPaused(Func<SourceMigration, bool> also, string what)
        {
            Bounded.WaitUntil(() => Session is { IsPostCopyPaused: true } s && also(s) || !_thread.IsAlive, Bound, what);
            Assert.True(_thread.IsAlive, "the migration ended instead of pausing: " + (_error?.Message ?? _outcome?.Source.Report.Error));
            return Session!;
        }

        public LoopbackMigration.Outcome Finish()
        {
            Assert.True(_thread.Join(Bound), "the migration did not end");
            return _error is null ? _outcome! : throw new InvalidOperationException("the migration thread failed", _error);
        }
    }

    private static Run Start(VirtualMachine vm, DestinationLimits limits, CancellationToken ct = default) => new(vm, limits, ct);

    [Fact]
    public void Once_the_automatic_window_is_spent_post_copy_stays_paused_until_a_resume_request()
    {
        using var vm = Started(seed: 21);
        Run run = Start(vm, Limits(recovery: TimeSpan.FromSeconds(45)));
        SourceMigration session = run.WaitUntilPaused(s => s.Progress.AwaitingResume, "the automatic window to be spent");
        Assert.Equal(MigrationPhase.PostCopyPaused, session.Progress.Phase);
        Assert.Contains("waiting for a resume request", session.Progress.Detail);

        run.LinkDown = false;
        Assert.True(session.RequestResume());

        LoopbackMigration.Outcome outcome = run.Finish();
        Assert.Null(outcome.DestinationError);
        MigrationReport r = outcome.Source.Report;
        Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
        Assert.True(r.Verification.DigestsMatch);
        Assert.Equal(1, r.PostCopy.Recoveries);
        Assert.Equal(0, r.PostCopy.DuplicatePages);
        // The pause outlasted the destination's 1 s page timeout, and no vCPU gave up.
        Assert.True(r.PostCopy.PausedMs >= 1000, $"paused {r.PostCopy.PausedMs} ms");
        Assert.False(session.RequestResume(), "nothing is paused any more");
        Assert.Equal(VmRunState.Paused, vm.State);

        using VirtualMachine dest = outcome.Destination!;
        Assert.Null(dest.Failure);
        ulong before = dest.TotalOps;
        Bounded.WaitUntil(() => dest.TotalOps > before + 1_000, TimeSpan.FromSeconds(30), "the migrated guest keeps running");
    }

    [Fact]
    public void A_cancel_abandons_a_paused_post_copy_and_the_destination_says_what_was_lost()
    {
        using var vm = Started(seed: 22);
        using var cancel = new CancellationTokenSource();
        Run run = Start(vm, Limits(recovery: TimeSpan.FromSeconds(3)), cancel.Token);
        run.WaitUntilPaused(_ => true, "post-copy to pause");

        cancel.Cancel();

        LoopbackMigration.Outcome outcome = run.Finish();
        MigrationReport r = outcome.Source.Report;
        Assert.Equal(MigrationOutcome.Failed, r.Outcome);
        Assert.Contains("abandoned by request while paused", r.Error);
        Assert.Contains("source keeps its paused copy", r.Error);
        Assert.False(outcome.Source.VmMoved);
        Assert.Equal(VmRunState.Paused, vm.State);

        Assert.Null(outcome.Destination);
        var destError = Assert.IsType<MigrationFailedException>(outcome.DestinationError);
        Assert.Contains("the source did not reconnect within 3 s", destError.Message);
        Assert.Matches(@"could not be completed: [1-9]\d* pages \([\d.]+ MiB\) never arrived from the source", destError.Message);
    }
}
