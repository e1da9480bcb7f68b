using Ferry.Core.Migration;
using System.Diagnostics;
using Ferry.Core.Paging;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Destination;

/// <summary>
/// The destination after a post-copy commit: starts the VM at once over guest RAM whose pending
/// pages are still at the source, then installs pages as they come (demand answers and the
/// background push alike) while vCPUs that touch a missing page wait for it and ask for it over
/// the return path. Ends when the source says the last page is out and every page is here and
/// matches the source's digest.
/// If the link breaks and the limits name a <see cref="PostCopyRecoveryRegistry"/>, post-copy
/// pauses: vCPUs on missing pages keep waiting, and a new connection from the source resumes it
/// (this side first says which pages it still lacks and repeats its open requests). Otherwise,
/// or if the source does not return in time, or a page wait times out, the VM is stopped and
/// discarded here (the source kept its paused copy) and the failure says why.
/// </summary>
internal sealed class PostCopyReceiver
{
    private readonly GuestMemory _memory;
    private readonly MemoryDigest _digest;
    private readonly VmConfig _config;
    private readonly VcpuState[] _vcpus;
    private readonly DirtyBitmap _pending;
    private readonly DestinationLimits _limits;
    private readonly string _migrationId;
    private readonly long _switchAt;
    private readonly CancellationToken _ct;
    private readonly List<Stream> _recoveredStreams = [];
    private Stream _stream;
    private FrameReader _reader;
    private FrameWriter _writer;
    private int _recoveries;
    private long _duplicates;

    // vCPU threads send page requests while this thread sends Resumed and the verdict: one writer, shared.
    private readonly object _writerGate = new();

    public PostCopyReceiver(Stream stream, FrameReader reader, FrameWriter writer, GuestMemory memory, MemoryDigest digest,
        VmConfig config, VcpuState[] vcpus, DirtyBitmap pending, DestinationLimits limits, string migrationId, long switchAt, CancellationToken ct)
    {
        _stream = stream;
        _reader = reader;
        _writer = writer;
        _memory = memory;
        _digest = digest;
        _config = config;
        _vcpus = vcpus;
        _pending = pending;
        _limits = limits;
        _migrationId = migrationId;
        _switchAt = switchAt;
        _ct = ct;
    }

    /// <summary>Runs the VM through post-copy. Returns it running with every page present; throws (having stopped and discarded it) otherwise.</summary>
    public VirtualMachine Run(Action<long> countReceived, long receivedBeforeSwitch, Action<string> setPhase)
    {
        var pages = new PostCopyPages(_pending, RequestPage, _limits.PageWaitTimeout, OnVcpuFailure);
        VirtualMachine? vm = null;
        long received = receivedBeforeSwitch;
        long runningAt = 0;
        // A newer connection from the source supersedes the current one, which may be half-open (still "up" here though the source gave up on it).
        _limits.PostCopyRecovery?.Register(_migrationId, () => Volatile.Read(ref _stream).Dispose());
        try
        {
            bool kernelFaults = _memory.FastInstallActive;
            if (kernelFaults)
            {
                _memory.BeginKernelPostCopy(pages, _pending);
            }
            else
            {
                _memory.BeginPostCopy(pages);
            }
            vm = VirtualMachine.Restore(_config, _memory, _vcpus);
            vm.Start();
            setPhase("post-copy");
            runningAt = Stopwatch.GetTimestamp();
            var work = new GuestWorkMeter(vm, runningAt, allPagesPresent: pages.Missing == 0);
            double resumeMs = (runningAt - _switchAt) * 1000.0 / Stopwatch.Frequency;
            Send(FrameType.Resumed, ControlJson.Encode(new Resumed { ResumeMs = resumeMs }));
            while (true)
            {
                Frame f;
                try
                {
                    f = _reader.Read();
                }
                catch (Exception ex) when (IsBrokenLink(ex, pages))
                {
                    setPhase("post-copy paused");
                    Recover(pages, ex);
                    setPhase("post-copy");
                    continue;
                }
                switch (f.Type)
                {
                    case FrameType.PageBatch:
                    {
                        int count = PageBatchCodec.Validate(f.Payload, _memory.PageCount, out _);
                        foreach (var e in PageBatchCodec.Entries(f.Payload))
                        {
                            bool zero = e.Encoding == PageEncoding.Zero;
                            if (!_memory.InstallArrivedPage(e.Page, e.Data, zero))
                            {
                                _duplicates++;
                            }
                            _digest.Set(e.Page, zero ? GuestMemory.ZeroPageHash : System.IO.Hashing.XxHash3.HashToUInt64(e.Data));
                        }
                        received += count;
                        countReceived(count);
                        if (pages.Missing == 0)
                        {
                            work.LastPageArrived();
                        }
                        break;
                    }
                    case FrameType.PostCopyEnd:
                    {
                        PostCopyEnd end = PostCopyEnd.Read(f.Payload);
                        ulong mine = _digest.Compute();
                        // After a recovery some pages were sent twice (lost in flight, then again), so only a clean run checks the count.
                        string? problem =
                            pages.Missing > 0 ? $"{pages.Missing} pages never arrived" :
                            _recoveries == 0 && end.PagesSent != received ? $"source sent {end.PagesSent} pages, destination received {received}" :
                            mine != end.Digest ? "page contents differ" : null;
                        var (p50, p99, max) = pages.Latencies.Summarize();
                        Send(FrameType.PostCopyComplete, ControlJson.Encode(work.AddTo(new PostCopyComplete
                        {
                            DigestMatches = problem is null,
                            DestinationDigest = MemoryDigest.Format(mine),
                            Problem = problem,
                            Faults = pages.Latencies.Count,
                            FaultLatencyP50Ms = p50,
                            FaultLatencyP99Ms = p99,
                            FaultLatencyMaxMs = max,
                            FaultPath = kernelFaults ? KernelFaultPath : SoftwareFaultPath,
                            ZeroFilledOnFault = pages.ZeroFilledOnFault,
                            DuplicatePages = _duplicates,
                        })));
                        if (problem is not null)
                        {
                            throw new MigrationFailedException(MigrationFailure.DigestMismatch,
                                $"post-copy ended with {problem} (source digest {MemoryDigest.Format(end.Digest)}, destination {MemoryDigest.Format(mine)})");
                        }
                        _memory.EndPostCopy();
                        return vm;
                    }
                    case FrameType.Abort:
                        throw new MigrationFailedException(MigrationFailure.Aborted, "source aborted: " + ControlJson.Decode<Abort>(f.Payload, "abort").Reason);
                    default:
                        throw new ProtocolException(ProtocolErrorKind.UnexpectedFrame, $"unexpected {f.Type} frame during post-copy");
                }
            }
        }
        catch (Exception ex)
        {
            // A vCPU's own reason (a page wait that timed out) explains the closed stream better than the read error does.
            string? vcpuReason = pages.Failure;
            string reason = vcpuReason ?? ex.Message;
            pages.Fail(reason);
            long missing = pages.Missing;
            double ranSeconds = runningAt == 0 ? 0 : (Stopwatch.GetTimestamp() - runningAt) / (double)Stopwatch.Frequency;
            // vCPUs blocked in kernel faults must be let go before the VM can stop.
            _memory.AbandonPostCopy();
            vm?.Stop();
            if (vm is not null)
            {
                vm.Dispose();
            }
            else
            {
                _memory.Dispose();
            }
            MigrationFailure kind = ex is MigrationFailedException m ? m.Kind
                : vcpuReason is not null && vcpuReason.Contains("did not arrive", StringComparison.Ordinal) ? MigrationFailure.Timeout
                : ex is ProtocolException { Kind: not ProtocolErrorKind.Truncated } ? MigrationFailure.ProtocolViolation
                : MigrationFailure.PeerDisconnected;
            throw new MigrationFailedException(kind, $"post-copy failed after the VM resumed here: {reason}. {Lost(missing, ranSeconds)}", ex);
        }
        finally
        {
            _limits.PostCopyRecovery?.Unregister(_migrationId);
            foreach (Stream s in _recoveredStreams)
            {
                s.Dispose();
            }
        }
    }

    internal const string KernelFaultPath = "userfaultfd: guest RAM registered MISSING, guest accesses are native copies, a resolver thread requests faulted pages and zero-fills never-written ones";
    internal const string SoftwareFaultPath = "software: every guest access checks a present bitmap and a vCPU on a missing page waits in managed code";
    /// <summary>What the failure cost, in plain words: the VM ran here ahead of its pages and cannot go on without them.</summary>
    private static string Lost(long missingPages, double ranSeconds) =>
        (missingPages > 0
            ? $"The VM could not be completed: {missingPages} pages ({missingPages * 4096 / 1048576.0:0.#} MiB) never arrived from the source"
            : "The VM could not be completed")
        + $"; it ran here for {ranSeconds:0.#} s and is now stopped and discarded (a source that is still up keeps its paused copy)";

    /// <summary>A lost connection, not a lost cause: recoverable when a registry is configured, no vCPU gave up, and nobody cancelled.</summary>
    private bool IsBrokenLink(Exception ex, PostCopyPages pages) =>
        _limits.PostCopyRecovery is not null && pages.Failure is null && !_ct.IsCancellationRequested &&
        ex is IOException or ObjectDisposedException or ProtocolException { Kind: ProtocolErrorKind.Truncated };

    /// <summary>Post-copy paused: waits for the source's new connection, then tells it what is still missing and repeats open requests.</summary>
    private void Recover(PostCopyPages pages, Exception broken)
    {
        _stream.Dispose();
        // No page can arrive until the source is back: waiting vCPUs keep waiting, bounded by RecoveryTimeout instead of their page timeout.
        pages.PauseWaitDeadlines();
        try
        {
            (Stream stream, FrameReader reader) = AwaitSource(pages, broken);
            Resume(pages, stream, reader);
        }
        finally
        {
            pages.ResumeWaitDeadlines();
        }
    }

    private (Stream, FrameReader) AwaitSource(PostCopyPages pages, Exception broken)
    {
        long deadline = Environment.TickCount64 + (long)_limits.RecoveryTimeout.TotalMilliseconds;
        Stream stream;
        FrameReader reader;
        // In slices, so a vCPU that gave up (or a cancel) ends the pause at once.
        while (!_limits.PostCopyRecovery!.TryTake(_migrationId, TimeSpan.FromMilliseconds(100), out stream, out reader))
        {
            if (pages.Failure is not null)
            {
                throw new MigrationFailedException(MigrationFailure.Timeout, pages.Failure);
            }
            _ct.ThrowIfCancellationRequested();
            if (Environment.TickCount64 >= deadline)
            {
                throw new MigrationFailedException(MigrationFailure.PeerDisconnected,
                    $"link to the source broke ({broken.Message}) and the source did not reconnect within {_limits.RecoveryTimeout.TotalSeconds:0.###} s");
            }
        }
        return (stream, reader);
    }

    /// <summary>Continues on the source's new connection: what is still missing first, then the requests still open.</summary>
    private void Resume(PostCopyPages pages, Stream stream, FrameReader reader)
    {
        _recoveries++;
        _recoveredStreams.Add(stream);
        if (stream.CanTimeout)
        {
            stream.ReadTimeout = (int)Math.Min(int.MaxValue, _limits.IdleTimeout.TotalMilliseconds);
        }
        lock (_writerGate)
        {
            _stream = stream;
            _reader = reader;
            _writer.Reconnect(stream);
            try
            {
                PendingPagesMessage.WriteAll(_writer, (int)((_memory.PageCount + 63) >> 6), pages.CopyMissingWords);
                Span<byte> request = stackalloc byte[PageRequest.Size];
                foreach (long page in pages.RequestedButMissing())
                {
                    new PageRequest(page).Write(request);
                    _writer.Write(FrameType.PageRequest, request);
                }
                _writer.Flush();
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException)
            {
                // The new link broke as well: the next read fails and post-copy pauses again.
            }
        }
    }

    private void RequestPage(long page)
    {
        Span<byte> payload = stackalloc byte[PageRequest.Size];
        new PageRequest(page).Write(payload);
        lock (_writerGate)
        {
            try
            {
                _writer.Write(FrameType.PageRequest, payload);
                _writer.Flush();
            }
            catch (Exception ex) when (_limits.PostCopyRecovery is not null && ex is IOException or ObjectDisposedException)
            {
                // The link is down; the request is repeated on the new connection (the page stays "requested").
            }
        }
    }

    private void Send(FrameType type, byte[] payload)
    {
        lock (_writerGate)
        {
            DestinationMigration.TrySend(_writer, type, payload);
        }
    }

    /// <summary>A vCPU gave up on a page: closing the stream ends the receive loop, which reports the vCPU's reason.</summary>
    private void OnVcpuFailure(string reason) => _stream.Dispose();
}
