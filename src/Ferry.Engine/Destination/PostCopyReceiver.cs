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
/// matches the source's digest. If the link breaks or a page wait times out first, the VM is
/// stopped and discarded here (the source kept its paused copy) and the failure says why.
/// </summary>
internal sealed class PostCopyReceiver
{
    private readonly Stream _stream;
    private readonly FrameReader _reader;
    private readonly FrameWriter _writer;
    private readonly GuestMemory _memory;
    private readonly MemoryDigest _digest;
    private readonly VmConfig _config;
    private readonly VcpuState[] _vcpus;
    private readonly DirtyBitmap _pending;
    private readonly TimeSpan _pageWaitTimeout;
    private readonly long _switchAt;

    // vCPU threads send page requests while this thread sends Resumed and the verdict: one writer, shared.
    private readonly object _writerGate = new();

    public PostCopyReceiver(Stream stream, FrameReader reader, FrameWriter writer, GuestMemory memory, MemoryDigest digest,
        VmConfig config, VcpuState[] vcpus, DirtyBitmap pending, TimeSpan pageWaitTimeout, long switchAt)
    {
        _stream = stream;
        _reader = reader;
        _writer = writer;
        _memory = memory;
        _digest = digest;
        _config = config;
        _vcpus = vcpus;
        _pending = pending;
        _pageWaitTimeout = pageWaitTimeout;
        _switchAt = switchAt;
    }

    /// <summary>Runs the VM through post-copy. Returns it running with every page present; throws (having stopped and discarded it) otherwise.</summary>
    public VirtualMachine Run(Action<long> countReceived, long receivedBeforeSwitch)
    {
        var pages = new PostCopyPages(_pending, RequestPage, _pageWaitTimeout, OnVcpuFailure);
        VirtualMachine? vm = null;
        long received = receivedBeforeSwitch;
        try
        {
            _memory.BeginPostCopy(pages);
            vm = VirtualMachine.Restore(_config, _memory, _vcpus);
            vm.Start();
            long runningAt = Stopwatch.GetTimestamp();
            long lastPageAt = pages.Missing == 0 ? runningAt : 0;
            double resumeMs = (runningAt - _switchAt) * 1000.0 / Stopwatch.Frequency;
            Send(FrameType.Resumed, ControlJson.Encode(new Resumed { ResumeMs = resumeMs }));
            while (true)
            {
                Frame f = _reader.Read();
                switch (f.Type)
                {
                    case FrameType.PageBatch:
                    {
                        int count = PageBatchCodec.Validate(f.Payload, _memory.PageCount, out _);
                        foreach (var e in PageBatchCodec.Entries(f.Payload))
                        {
                            bool zero = e.Encoding == PageEncoding.Zero;
                            _memory.InstallArrivedPage(e.Page, e.Data, zero);
                            _digest.Set(e.Page, zero ? GuestMemory.ZeroPageHash : System.IO.Hashing.XxHash3.HashToUInt64(e.Data));
                        }
                        received += count;
                        countReceived(count);
                        if (lastPageAt == 0 && pages.Missing == 0)
                        {
                            lastPageAt = Stopwatch.GetTimestamp();
                        }
                        break;
                    }
                    case FrameType.PostCopyEnd:
                    {
                        PostCopyEnd end = PostCopyEnd.Read(f.Payload);
                        ulong mine = _digest.Compute();
                        string? problem =
                            pages.Missing > 0 ? $"{pages.Missing} pages never arrived" :
                            end.PagesSent != received ? $"source sent {end.PagesSent} pages, destination received {received}" :
                            mine != end.Digest ? "page contents differ" : null;
                        var (p50, p99, max) = pages.Latencies.Summarize();
                        Send(FrameType.PostCopyComplete, ControlJson.Encode(new PostCopyComplete
                        {
                            DigestMatches = problem is null,
                            DestinationDigest = MemoryDigest.Format(mine),
                            Problem = problem,
                            Faults = pages.Latencies.Count,
                            FaultLatencyP50Ms = p50,
                            FaultLatencyP99Ms = p99,
                            FaultLatencyMaxMs = max,
                            ResumeMs = lastPageAt == 0 ? 0 : (lastPageAt - runningAt) * 1000.0 / Stopwatch.Frequency,
                        }));
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
            throw new MigrationFailedException(kind,
                $"post-copy failed after the VM resumed here: {reason}; the VM is stopped and discarded (the source keeps its paused copy)", ex);
        }
    }

    private void RequestPage(long page)
    {
        Span<byte> payload = stackalloc byte[PageRequest.Size];
        new PageRequest(page).Write(payload);
        lock (_writerGate)
        {
            _writer.Write(FrameType.PageRequest, payload);
            _writer.Flush();
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
