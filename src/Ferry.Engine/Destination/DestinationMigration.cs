using Ferry.Core.Migration;
using System.Diagnostics;
using Ferry.Core.Paging;
using Ferry.Core.Reporting;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Engine.Destination;

/// <summary>What the destination is willing to accept.</summary>
public sealed record DestinationLimits
{
    /// <summary>Largest guest RAM accepted, in bytes.</summary>
    public long MaxMemoryBytes { get; init; } = VmConfig.MaxMemoryBytes;

    /// <summary>How received pages go into guest RAM.</summary>
    public Core.Migration.PageInstallChoice PageInstall { get; init; } = Core.Migration.PageInstallChoice.Auto;

    /// <summary>How long a silent source is tolerated between frames.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Post-copy: the longest a vCPU waits for one missing page before the migration fails.</summary>
    public TimeSpan PageWaitTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Post-copy: where to wait for the source to reconnect after the link broke. Null = a broken link ends post-copy at once.</summary>
    public PostCopyRecoveryRegistry? PostCopyRecovery { get; init; }

    /// <summary>
    /// Post-copy: how long to wait for the source to reconnect after the link broke (each break).
    /// Meanwhile vCPUs on missing pages wait without their <see cref="PageWaitTimeout"/> running. An
    /// agent sets its post-copy pause limit here, to match how long a source keeps a paused post-copy.
    /// </summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// The destination side: receives into fresh guest RAM that no VM runs on, checks the digest at
/// switchover, and builds and starts the VM only on the source's commit. Any failure before that
/// discards everything received; nothing ever touches a running VM.
/// </summary>
public sealed class DestinationMigration
{
    private readonly Stream _stream;
    private readonly HostInfo _self;
    private readonly DestinationLimits _limits;
    private readonly Func<Offer, string?>? _admit;

    /// <param name="admit">Returns a refusal reason, or null to accept (e.g. a VM id already present).</param>
    public DestinationMigration(Stream authenticatedStream, HostInfo self, DestinationLimits limits, Func<Offer, string?>? admit = null)
    {
        _stream = authenticatedStream;
        _self = self;
        _limits = limits;
        _admit = admit;
    }

    /// <summary>The offer, once received (for logs and listings).</summary>
    public Offer? Offer { get; private set; }

    /// <summary>Pages installed so far.</summary>
    public long PagesReceived => Interlocked.Read(ref _pagesReceived);

    private long _pagesReceived;
    private volatile string _phase = "receiving";

    /// <summary>"receiving" until the VM runs here; then "post-copy", or "post-copy paused" while a broken link waits for the source to reconnect.</summary>
    public string Phase => _phase;

    /// <summary>Receives one VM. Returns it running; throws (having kept nothing) on any failure.</summary>
    public VirtualMachine Run(CancellationToken ct) =>
        RunOrResume(ct) ?? throw new MigrationFailedException(MigrationFailure.ProtocolViolation, "the connection resumed a post-copy instead of offering a VM");

    /// <summary>
    /// Like <see cref="Run"/>, but a connection that opens with PostCopyResume is handed to the
    /// paused post-copy it names (<see cref="DestinationLimits.PostCopyRecovery"/>): then this
    /// returns null and the stream belongs to that migration (the caller must not close it).
    /// </summary>
    public VirtualMachine? RunOrResume(CancellationToken ct)
    {
        var reader = new FrameReader(_stream);
        var writer = new FrameWriter(_stream);
        GuestMemory? memory = null;
        VirtualMachine? vm = null;
        using var registration = ct.Register(() => _stream.Dispose());
        if (_stream.CanTimeout)
        {
            // A source that goes silent without closing must not hold guest RAM here forever.
            _stream.ReadTimeout = (int)Math.Min(int.MaxValue, _limits.IdleTimeout.TotalMilliseconds);
        }
        try
        {
            Frame first = reader.Read();
            if (first.Type == FrameType.PostCopyResume && _limits.PostCopyRecovery is { } recovery)
            {
                try
                {
                    recovery.HandOver(_stream, reader, first.Payload);
                }
                catch (MigrationFailedException refused)
                {
                    // Said plainly, so the source stops retrying a post-copy that no longer exists here.
                    TrySend(writer, FrameType.Abort, ControlJson.Encode(new Abort { Reason = refused.Message }));
                    throw;
                }
                return null;
            }
            if (first.Type == FrameType.Abort)
            {
                throw Aborted(first.Payload);
            }
            Expect(first, FrameType.Offer);
            Offer offer = ControlJson.Decode<Offer>(first.Payload, "offer");
            Offer = offer;
            VmConfig config = ConfigFrom(offer);
            string? refusal = Validate(offer, config) ?? _admit?.Invoke(offer);
            if (refusal is not null)
            {
                TrySend(writer, FrameType.Abort, ControlJson.Encode(new Abort { Reason = refusal }));
                throw new MigrationFailedException(MigrationFailure.Refused, $"offer refused: {refusal}");
            }
            PageInstallDecision install;
            try
            {
                install = PageInstallDecision.ForThisHost(_limits.PageInstall);
            }
            catch (PlatformNotSupportedException ex)
            {
                TrySend(writer, FrameType.Abort, ControlJson.Encode(new Abort { Reason = ex.Message }));
                throw new MigrationFailedException(MigrationFailure.Refused, ex.Message);
            }
            memory = new GuestMemory(config.MemoryBytes);
            if (install.IsUffd)
            {
                memory.EnableFastInstall();
            }
            var installer = new PageInstaller(memory);
            var digest = new MemoryDigest(memory.PageCount);
            writer.Write(FrameType.OfferAccepted, ControlJson.Encode(new OfferAccepted
            {
                DestinationHost = _self.HostName,
                Os = _self.Os,
                ProcessorCount = _self.ProcessorCount,
                PageInstall = install.Backend,
                PageInstallReason = install.Reason,
            }));
            writer.Flush();

            var vcpus = new VcpuState[config.Vcpus];
            var haveVcpu = new bool[config.Vcpus];
            bool haveDevice = false;
            // Post-copy: the pages still at the source, as the PendingPages frames describe them.
            DirtyBitmap? pending = null;
            int pendingWords = 0;
            long hashTicks = 0;
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                Frame f = reader.Read();
                switch (f.Type)
                {
                    case FrameType.PageBatch:
                        int batchPages = PageBatchCodec.Validate(f.Payload, memory.PageCount, out _);
                        foreach (var e in PageBatchCodec.Entries(f.Payload))
                        {
                            if (e.Encoding == PageEncoding.Zero)
                            {
                                installer.Flush();
                                memory.InstallZeroPage(e.Page);
                                digest.Set(e.Page, GuestMemory.ZeroPageHash);
                            }
                            else
                            {
                                installer.Add(e.Page, e.Data);
                                long t0 = Stopwatch.GetTimestamp();
                                digest.Set(e.Page, System.IO.Hashing.XxHash3.HashToUInt64(e.Data));
                                hashTicks += Stopwatch.GetTimestamp() - t0;
                            }
                        }
                        installer.Flush();
                        Interlocked.Add(ref _pagesReceived, batchPages);
                        break;
                    case FrameType.RoundEnd:
                    {
                        // Acknowledged so the source can pause only once the link is drained.
                        RoundEnd end = RoundEnd.Read(f.Payload);
                        Span<byte> ack = stackalloc byte[RoundEnd.Size];
                        end.Write(ack);
                        writer.Write(FrameType.RoundAck, ack);
                        writer.Flush();
                        break;
                    }
                    case FrameType.VcpuState:
                    {
                        int index = VcpuStateMessage.Read(f.Payload, VcpuState.SizeInBytes, config.Vcpus, out ReadOnlySpan<byte> regs);
                        vcpus[index] = VcpuState.Read(regs);
                        haveVcpu[index] = true;
                        break;
                    }
                    case FrameType.DeviceState:
                        ControlJson.Decode<DeviceState>(f.Payload, "device state");
                        haveDevice = true;
                        break;
                    case FrameType.PendingPages:
                    {
                        pending ??= new DirtyBitmap(memory.PageCount);
                        ulong[] words = new ulong[Math.Min(pending.WordCount, PendingPagesMessage.MaxWordsPerFrame)];
                        int n = PendingPagesMessage.Read(f.Payload, pendingWords, pending.WordCount, words);
                        pending.OrWords(pendingWords, words.AsSpan(0, n));
                        pendingWords += n;
                        break;
                    }
                    case FrameType.Switchover:
                    {
                        long switchAt = Stopwatch.GetTimestamp();
                        Switchover sw = Switchover.Read(f.Payload);
                        ulong mine = digest.Compute();
                        string? problem =
                            !haveVcpu.All(x => x) ? "vCPU state missing" :
                            pending is not null && pendingWords != pending.WordCount ? $"pending pages map covers {pendingWords} of {pending.WordCount} words" :
                            !haveDevice ? "device state missing" :
                            sw.GuestPages != memory.PageCount ? $"source counts {sw.GuestPages} guest pages, destination {memory.PageCount}" :
                            sw.Vcpus != config.Vcpus ? $"source says {sw.Vcpus} vCPUs, the offer said {config.Vcpus}" :
                            sw.PagesSent != PagesReceived ? $"source sent {sw.PagesSent} pages, destination received {PagesReceived}" :
                            mine != sw.Digest ? "page contents differ" : null;
                        var ready = new SwitchoverReady
                        {
                            DigestMatches = problem is null,
                            DestinationDigest = MemoryDigest.Format(mine),
                            DestinationHashMs = hashTicks * 1000.0 / Stopwatch.Frequency,
                            Problem = problem,
                        };
                        writer.Write(FrameType.SwitchoverReady, ControlJson.Encode(ready));
                        writer.Flush();
                        if (problem is not null)
                        {
                            throw new MigrationFailedException(MigrationFailure.DigestMismatch,
                                $"switchover refused: {problem} (source digest {MemoryDigest.Format(sw.Digest)}, destination {ready.DestinationDigest})");
                        }
                        Frame commit = reader.Read();
                        if (commit.Type == FrameType.Abort)
                        {
                            throw Aborted(commit.Payload);
                        }
                        Expect(commit, FrameType.Commit);
                        if (pending is not null)
                        {
                            // With uffd install the registration stays: post-copy runs on the kernel fault path.
                            GuestMemory postCopyMemory = memory;
                            memory = null;
                            return new PostCopyReceiver(_stream, reader, writer, postCopyMemory, digest, config, vcpus, pending, _limits, offer.MigrationId, switchAt, ct)
                                .Run(pages => Interlocked.Add(ref _pagesReceived, pages), PagesReceived, phase => _phase = phase);
                        }
                        // Never-written pages must fault in as zeros again once guest code runs.
                        memory.DisableFastInstall();
                        vm = VirtualMachine.Restore(config, memory, vcpus);
                        memory = null;
                        vm.Start();
                        double resumeMs = (Stopwatch.GetTimestamp() - switchAt) * 1000.0 / Stopwatch.Frequency;
                        // From here the VM runs here; a lost confirmation does not undo that.
                        TrySend(writer, FrameType.Resumed, ControlJson.Encode(new Resumed { ResumeMs = resumeMs }));
                        return vm;
                    }
                    case FrameType.Abort:
                        throw Aborted(f.Payload);
                    default:
                        throw new ProtocolException(ProtocolErrorKind.UnexpectedFrame, $"unexpected {f.Type} frame before switchover");
                }
            }
        }
        catch (Exception ex) when (vm is null)
        {
            memory?.Dispose();
            // Tell the source why, so its report names the cause rather than a closed connection.
            if (ex is ProtocolException or MigrationFailedException { Kind: not (MigrationFailure.Aborted or MigrationFailure.Refused) })
            {
                TrySend(writer, FrameType.Abort, ControlJson.Encode(new Abort { Reason = ex.Message }));
            }
            throw;
        }
    }

    private static MigrationFailedException Aborted(ReadOnlySpan<byte> payload) =>
        new(MigrationFailure.Aborted, "source aborted: " + ControlJson.Decode<Abort>(payload, "abort").Reason);

    private static void Expect(in Frame f, FrameType type)
    {
        if (f.Type != type)
        {
            throw new ProtocolException(ProtocolErrorKind.UnexpectedFrame, $"expected {type}, got {f.Type}");
        }
    }

    internal static void TrySend(FrameWriter writer, FrameType type, byte[] payload)
    {
        try
        {
            writer.Write(type, payload);
            writer.Flush();
        }
        catch (IOException)
        {
            // The peer is gone; what we would have told it no longer matters to it.
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private static VmConfig ConfigFrom(Offer offer) => new()
    {
        Id = offer.VmId,
        Name = offer.VmName,
        MemoryBytes = offer.MemoryBytes,
        Vcpus = offer.Vcpus,
        Workload = offer.Workload,
        OpsLimitPerVcpu = offer.OpsLimitPerVcpu,
    };

    private string? Validate(Offer offer, VmConfig config)
    {
        if (offer.VcpuStateBytes != VcpuState.SizeInBytes)
        {
            return $"source vCPU state is {offer.VcpuStateBytes} bytes; this agent expects {VcpuState.SizeInBytes}";
        }
        if (offer.MemoryBytes > _limits.MaxMemoryBytes)
        {
            return $"VM needs {offer.MemoryBytes} bytes of RAM; this agent accepts at most {_limits.MaxMemoryBytes}";
        }
        try
        {
            config.Validate();
        }
        catch (ArgumentException ex)
        {
            return "invalid VM description: " + ex.Message;
        }
        return null;
    }
}
