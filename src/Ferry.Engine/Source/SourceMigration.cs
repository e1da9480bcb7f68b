using System.Diagnostics;
using Ferry.Core.Migration;
using Ferry.Core.Paging;
using Ferry.Core.Policy;
using Ferry.Core.Progress;
using Ferry.Core.Reporting;
using Ferry.Core.Tracking;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Source;

/// <summary>The result of the source side: the report, and whether the VM now lives at the destination.</summary>
public sealed record SourceResult(MigrationReport Report, bool VmMoved);

/// <summary>
/// The source side of one migration over an authenticated stream. Until the commit frame is
/// written, any failure (destination gone, bad frame, cancel, policy abort) leaves the source VM
/// running and untouched; after it, the destination owns the VM.
/// </summary>
public sealed partial class SourceMigration
{
    private readonly string _migrationId;
    private readonly VirtualMachine _vm;
    private Stream _stream;
    private readonly Func<CancellationToken, Stream>? _reconnect;
    private readonly Func<Stream, Core.Pacing.LinkDelivery?>? _linkDelivery;
    private readonly List<ReturnPath> _recoveredReturnPaths = [];

    /// <summary>How long a failed write waits for the return path to say why (see <see cref="ReturnPath.ErrorWithin"/>).</summary>
    private static readonly TimeSpan ReturnPathGrace = TimeSpan.FromMilliseconds(500);
    private readonly MigrationOptions _options;
    private readonly IDirtyLog _dirtyLog;
    private readonly HostInfo _sourceHost;
    private readonly HostInfo _destinationEndpoint;
    private readonly IMigrationPolicy _policy;
    private readonly GuestMemory _memory;
    private readonly MemoryDigest _digest;
    private readonly DirtyBitmap _sentEver;
    private readonly FrameWriter _writer;
    private readonly List<RoundRecord> _rounds = [];
    private readonly MonotonicEta _eta = new();
    private readonly long _start = Stopwatch.GetTimestamp();
    private Core.Pacing.TokenBucket? _bucket;
    private volatile MigrationProgress _progress = new();
    private long _lastProgressAt;

    // Counters (written by the migration thread only).
    private long _pagesSent;
    private long _zeroSent;
    private long _hashTicks;
    private int _round;
    private long _roundPages;
    private long _roundSent;
    private long _roundStart;
    private long _roundWireStart;
    private double _lastDirtyRate;
    private double _lastBandwidth;

    public SourceMigration(
        string migrationId,
        VirtualMachine vm,
        Stream authenticatedStream,
        MigrationOptions options,
        IDirtyLog dirtyLog,
        HostInfo sourceHost,
        HostInfo destinationEndpoint,
        Func<CancellationToken, Stream>? reconnect = null,
        Func<Stream, Core.Pacing.LinkDelivery?>? linkDelivery = null)
    {
        options.Validate();
        _migrationId = migrationId;
        _vm = vm;
        _stream = authenticatedStream;
        // Post-copy recovery: opens a new authenticated connection to the same destination. Null = a broken link after switchover is final.
        _reconnect = reconnect;
        // Post-copy without a bandwidth limit: how fast the link delivers (TCP's estimate, from the agent). Null = never paced automatically.
        _linkDelivery = linkDelivery;
        _options = options;
        _dirtyLog = dirtyLog;
        _sourceHost = sourceHost;
        _destinationEndpoint = destinationEndpoint;
        _policy = options.CreatePolicy();
        _memory = vm.Memory;
        _digest = new MemoryDigest(_memory.PageCount);
        _sentEver = new DirtyBitmap(_memory.PageCount);
        _writer = new FrameWriter(authenticatedStream);
    }

    /// <summary>A consistent snapshot for progress displays; safe to read from any thread.</summary>
    public MigrationProgress Progress => _progress;

    private double Seconds(long from, long to) => (to - from) / (double)Stopwatch.Frequency;

    private double Ms(long from, long to) => Seconds(from, to) * 1000;

    /// <summary>Runs the migration to its end on the calling thread (a dedicated one: it blocks).</summary>
    public SourceResult Run(CancellationToken cancellationToken)
    {
        DateTimeOffset startedAt = DateTimeOffset.UtcNow;
        _abandon = cancellationToken;
        var baseline = _vm.OpsRate(_options.BaselineWindow);
        long opsAtStart = (long)_vm.TotalOps;
        var ctx = new RunContext { Baseline = baseline, OpsAtStart = opsAtStart, StartedAt = startedAt };
        using var returnPath = new ReturnPath(_stream, _memory.PageCount);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, returnPath.Failed);
        try
        {
            Migrate(ctx, returnPath, linked.Token);
            return new SourceResult(BuildReport(ctx, "completed", null), VmMoved: true);
        }
        catch (Exception ex)
        {
            bool committed = ex is CommittedButUnconfirmedException;
            bool postCopyBroken = ex is PostCopyBrokenException;
            MigrationFailedException failure = postCopyBroken
                ? ClassifyPostCopy(ex.InnerException!, returnPath)
                : Classify(ex, returnPath, cancellationToken, committed);
            if (!committed)
            {
                TryTellDestination(failure.Message);
            }
            if (!committed && !postCopyBroken)
            {
                RestoreSource();
            }
            // Once the last page went out the destination may have finished and only its verdict was lost: as after an unanswered commit, it may be running the VM.
            bool unconfirmed = committed || (postCopyBroken && ctx.PostCopyEndSent);
            string outcome = unconfirmed ? "unconfirmed" : failure.Kind == MigrationFailure.Cancelled ? "cancelled" : "failed";
            return new SourceResult(BuildReport(ctx, outcome, failure.Message), VmMoved: false);
        }
        finally
        {
            _dirtyLog.Stop();
            // Closing the stream ends the return path's blocking read.
            _stream.Dispose();
            foreach (ReturnPath recovered in _recoveredReturnPaths)
            {
                recovered.Dispose();
            }
        }
    }

    private MigrationFailedException Classify(Exception ex, ReturnPath returnPath, CancellationToken userToken, bool committed)
    {
        if (committed)
        {
            return new MigrationFailedException(MigrationFailure.PeerDisconnected,
                $"commit was sent but the destination did not confirm resuming ({ex.Message}); the source VM is kept paused");
        }
        if (ex is OperationCanceledException && userToken.IsCancellationRequested)
        {
            return new MigrationFailedException(MigrationFailure.Cancelled, "cancelled by request");
        }
        // A write failure usually has a clearer cause on the return path (abort reason, EOF), which may take a moment to arrive.
        if ((ex is IOException or OperationCanceledException or ObjectDisposedException) && returnPath.ErrorWithin(ReturnPathGrace) is { } rp)
        {
            return ReturnPath.Wrap(rp, "during " + _progress.Phase);
        }
        return ReturnPath.Wrap(ex, "during " + _progress.Phase);
    }

    /// <summary>After a post-copy switchover the VM ran at the destination: resuming the source copy would fork it, so it stays paused.</summary>
    private MigrationFailedException ClassifyPostCopy(Exception inner, ReturnPath returnPath)
    {
        Exception cause = inner is IOException or OperationCanceledException or ObjectDisposedException && returnPath.ErrorWithin(ReturnPathGrace) is { } rp ? rp : inner;
        MigrationFailedException wrapped = ReturnPath.Wrap(cause, "during post-copy");
        return new MigrationFailedException(wrapped.Kind,
            $"post-copy failed after the VM resumed at the destination: {wrapped.Message}; the source keeps its paused copy", wrapped);
    }

    private void RestoreSource()
    {
        if (_vm.State == VmRunState.Paused)
        {
            _vm.Resume();
        }
    }

    private void TryTellDestination(string reason)
    {
        try
        {
            if (_writer.Error is null)
            {
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

    private sealed class RunContext
    {
        public (double OpsPerSecond, TimeSpan Covered) Baseline;
        public long OpsAtStart;
        public long OpsAtPause = -1;
        public DateTimeOffset StartedAt;
        public HostInfo? Destination;
        public PageInstallInfo? PageInstall;
        public string? StopReason;
        public long PausedAt;
        public long FinalPagesDone;
        public long StateDone;
        public long ResumedAt;
        public double DestinationResumeMs;
        public double DigestInDowntimeMs;
        public ulong SourceDigest;
        public SwitchoverReady? Ready;
        public bool? RehashMatches;
        public double RehashMs;

        // Post-copy (written by the migration thread only).
        public bool PostCopyUsed;
        public int PreCopyRounds;
        public long PendingAtSwitchover;
        public long ZeroFilledLocally;
        public long DemandPages;
        public long PushPages;
        public long PrePagedPages;
        public long RequestsAlreadySent;
        public long LastPageSentAt;
        public long CompletedAt;
        public PostCopyComplete? PostCopyComplete;
        public Core.Paging.PrePagingCursor? Cursor;
        public long Remaining;
        public int Recoveries;
        public long PagesLost;
        public bool PostCopyEndSent;
        public double AutoPacedBytesPerSecond;
        public long PausedTicks;
    }
}
