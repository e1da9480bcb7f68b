using Ferry.Core.Paging;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Destination;

/// <summary>
/// The destination's side of post-copy once the commit came: the VM running over guest RAM whose
/// pending pages are still at the source, vCPUs that ask for the pages they touch, and the
/// connection those requests go out on (replaced when the source reconnects after a break).
/// vCPU threads (or the userfaultfd resolver) write page requests while the migration thread
/// writes answers and verdicts, so the writer is shared under a lock.
/// </summary>
internal sealed class PostCopyReceiver : IDisposable
{
    internal const string KernelFaultPath = "userfaultfd: guest RAM registered MISSING, guest accesses are native copies, a resolver thread requests faulted pages and zero-fills never-written ones";
    internal const string SoftwareFaultPath = "software: every guest access checks a present bitmap and a vCPU on a missing page waits in managed code";

    private readonly object _writerGate = new();
    private readonly ReceivedGuest _guest;
    private readonly bool _recoverable;
    private readonly List<Stream> _recoveredStreams = [];
    private readonly Action _vcpuFailed;
    private FrameWriter _writer;
    private Stream _stream;

    public PostCopyReceiver(ReceivedGuest guest, Stream stream, FrameWriter writer, TimeSpan pageWaitTimeout, bool recoverable, Action vcpuFailed)
    {
        _guest = guest;
        _stream = stream;
        _writer = writer;
        _recoverable = recoverable;
        _vcpuFailed = vcpuFailed;
        Pages = new PostCopyPages(guest.Pending!, RequestPage, pageWaitTimeout, _ => _vcpuFailed());
    }

    public PostCopyPages Pages { get; }

    public VirtualMachine? Vm { get; private set; }

    public GuestWorkMeter? Work { get; private set; }

    public bool KernelFaults { get; private set; }

    public long Duplicates => Interlocked.Read(ref _duplicates);

    private long _duplicates;

    /// <summary>The connection the requests go out on now.</summary>
    public Stream Stream => Volatile.Read(ref _stream);

    /// <summary>Starts the VM at once; guest accesses to missing pages are trapped (kernel) or checked (software).</summary>
    public void Start(TimeProvider time)
    {
        GuestMemory memory = _guest.Memory;
        // With uffd install the registration stays: post-copy runs on the kernel fault path.
        KernelFaults = memory.FastInstallActive;
        if (KernelFaults)
        {
            memory.BeginKernelPostCopy(Pages, _guest.Pending!);
        }
        else
        {
            memory.BeginPostCopy(Pages);
        }
        Vm = VirtualMachine.Restore(_guest.Config, _guest.HandOver(), _guest.Vcpus);
        Vm.Start();
        Work = new GuestWorkMeter(Vm, time, allPagesPresent: Pages.Missing == 0);
    }

    /// <summary>Installs a batch of arrived pages; the resume phase ends with the last one.</summary>
    public int Install(ReadOnlySpan<byte> payload)
    {
        Interlocked.Add(ref _duplicates, _guest.InstallArrived(payload, out int pages));
        if (Pages.Missing == 0)
        {
            Work!.LastPageArrived();
        }
        return pages;
    }

    public void Send(FrameType type, byte[] payload)
    {
        lock (_writerGate)
        {
            DestinationMigration.TrySend(_writer, type, payload);
        }
    }

    /// <summary>The verdict with what this side measured: faults, their latency, the guest's work here.</summary>
    public PostCopyComplete Verdict(bool matches, string digest, string? problem)
    {
        var (p50, p99, max) = Pages.Latencies.Summarize();
        return Work!.AddTo(new PostCopyComplete
        {
            DigestMatches = matches,
            DestinationDigest = digest,
            Problem = problem,
            Faults = Pages.Latencies.Count,
            FaultLatencyP50Ms = p50,
            FaultLatencyP99Ms = p99,
            FaultLatencyMaxMs = max,
            FaultPath = KernelFaults ? KernelFaultPath : SoftwareFaultPath,
            ZeroFilledOnFault = Pages.ZeroFilledOnFault,
            DuplicatePages = Duplicates,
        });
    }

    /// <summary>Continues on the source's new connection: what is still missing first, then the requests still open.</summary>
    public void Resume(Stream stream)
    {
        _recoveredStreams.Add(stream);
        lock (_writerGate)
        {
            Volatile.Write(ref _stream, stream);
            _writer.Reconnect(stream);
            try
            {
                PendingPagesMessage.WriteAll(_writer, (int)((_guest.Digest.PageCount + 63) >> 6), Pages.CopyMissingWords);
                Span<byte> request = stackalloc byte[PageRequest.Size];
                foreach (long page in Pages.RequestedButMissing())
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

    /// <summary>The migration failed after the VM ran here: let blocked vCPUs go, stop and free the VM.</summary>
    public void Discard(string reason)
    {
        Pages.Fail(reason);
        if (Vm is { } vm)
        {
            // vCPUs blocked in kernel faults must be let go before the VM can stop.
            vm.Memory.AbandonPostCopy();
            vm.Stop();
            vm.Dispose();
            Vm = null;
        }
        else if (_guest.OwnsMemory)
        {
            _guest.Memory.AbandonPostCopy();
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
            catch (Exception ex) when (_recoverable && ex is IOException or ObjectDisposedException)
            {
                // The link is down; the request is repeated on the new connection (the page stays "requested").
            }
        }
    }

    public void Dispose()
    {
        foreach (Stream s in _recoveredStreams)
        {
            s.Dispose();
        }
    }
}
