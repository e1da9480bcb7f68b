using Ferry.Core.Migration;
using System.IO.Hashing;
using System.Net.Sockets;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Handshake;
using Ferry.Protocol.Messages;
using Ferry.Tests.Support;
using Ferry.Vm.Cpu;
using Ferry.Vm.Machine;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Protocol;

/// <summary>
/// The destination against a source driven by hand, frame by frame: an honest one (the control
/// that shows the hand-written conversation is right) and ones that lie or break the rules.
/// </summary>
public sealed class HandDrivenSourceTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private const long MemoryBytes = 1L << 20;
    private const long GuestPages = MemoryBytes / 4096;

    /// <summary>A destination on its own thread, and the source end of its connection, authenticated.</summary>
    private sealed class Session : IDisposable
    {
        private readonly Ferry.Transport.MigrationConnection _server;
        private readonly Ferry.Transport.MigrationConnection _client;
        private readonly Task<(VirtualMachine? Vm, Exception? Error)> _destination;

        public Session(DestinationLimits? limits = null)
        {
            (_client, _server) = Ferry.Transport.LoopbackPair.Open(LoopbackMigration.Transport);
            _client.Socket.ReceiveTimeout = _server.Socket.ReceiveTimeout = 20_000;
            Client = _client.Stream;
            _destination = Task.Factory.StartNew(() =>
            {
                try
                {
                    var d = new DestinationMigration(_server.Stream, HostIdentity.Local("dest"), limits ?? new DestinationLimits());
                    return ((VirtualMachine?)d.Run(CancellationToken.None), (Exception?)null);
                }
                catch (Exception ex)
                {
                    return (null, ex);
                }
                finally
                {
                    _server.Dispose();
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            Writer = new FrameWriter(Client);
            Reader = new FrameReader(Client);
        }

        public Stream Client { get; }

        public FrameWriter Writer { get; }

        public FrameReader Reader { get; }

        /// <summary>The next frame from the destination, past the round acknowledgements it sends after each round end.</summary>
        public (FrameType Type, byte[] Payload) Receive() =>
            Bounded.Run(() =>
            {
                for (int i = 0; i < 1_000; i++)
                {
                    Frame f = Reader.Read();
                    if (f.Type != FrameType.RoundAck)
                    {
                        return (f.Type, f.Payload.ToArray());
                    }
                    RoundAcks++;
                }
                throw new InvalidOperationException("destination sent nothing but round acknowledgements");
            }, Limit, "a frame from the destination");

        public int RoundAcks { get; private set; }

        public (VirtualMachine? Vm, Exception? Error) Result()
        {
            Assert.True(_destination.Wait(Limit), $"destination did not finish within {Limit.TotalSeconds:0} s");
            return _destination.Result;
        }

        public void Dispose()
        {
            _client.Dispose();
            if (_destination.Wait(Limit))
            {
                _destination.Result.Vm?.Dispose();
            }
        }
    }

    private static readonly Offer TheOffer = new()
    {
        MigrationId = "m-hand",
        VmId = "hand",
        VmName = "hand",
        MemoryBytes = MemoryBytes,
        Vcpus = 1,
        Workload = "idle",
        Technique = "precopy",
        SourceHost = "by-hand",
        VcpuStateBytes = VcpuState.SizeInBytes,
    };

    private static byte[] PageThree() => GoldenFrameTests.SamplePage();

    /// <summary>The digest of a guest whose only non-zero page is page 3 (as the destination computes it).</summary>
    private static ulong TrueDigest()
    {
        var digest = new MemoryDigest(GuestPages);
        digest.Set(3, XxHash3.HashToUInt64(PageThree()));
        return digest.Compute();
    }

    /// <summary>Offer, accepted, one batch (page 3 raw, page 7 zero), round end, vCPU, device.</summary>
    private static void SendEverythingButSwitchover(Session s, bool vcpu = true, bool device = true)
    {
        s.Writer.Write(FrameType.Offer, ControlJson.Encode(TheOffer));
        var (type, payload) = s.Receive();
        Assert.Equal(FrameType.OfferAccepted, type);
        Assert.Equal(Environment.MachineName, ControlJson.Decode<OfferAccepted>(payload, "offer accepted").DestinationHost);

        byte[] batch = new byte[PageBatchCodec.HeaderSize + 2 * PageBatchCodec.EntryHeaderSize + PageBatchCodec.PageBytes];
        PageBatchCodec.WriteHeader(batch, 2, 1);
        PageBatchCodec.WriteEntryHeader(batch.AsSpan(8), 3, PageEncoding.Raw);
        PageThree().CopyTo(batch, 16);
        PageBatchCodec.WriteEntryHeader(batch.AsSpan(16 + 4096), 7, PageEncoding.Zero);
        s.Writer.Write(FrameType.PageBatch, batch);
        byte[] roundEnd = new byte[RoundEnd.Size];
        new RoundEnd(1, 2).Write(roundEnd);
        s.Writer.Write(FrameType.RoundEnd, roundEnd);

        if (vcpu)
        {
            var state = new VcpuState { Ops = 77 };
            byte[] regs = new byte[VcpuState.SizeInBytes];
            VcpuState.Write(state, regs);
            byte[] msg = new byte[VcpuStateMessage.HeaderSize + regs.Length];
            VcpuStateMessage.Write(msg, 0, regs);
            s.Writer.Write(FrameType.VcpuState, msg);
        }
        if (device)
        {
            s.Writer.Write(FrameType.DeviceState, ControlJson.Encode(new DeviceState { NicAddress = "vnic:hand" }));
        }
    }

    private static SwitchoverReady Switch(Session s, ulong digest)
    {
        byte[] sw = new byte[Switchover.Size];
        new Switchover(digest, PagesSent: 2, GuestPages: GuestPages, Vcpus: 1).Write(sw);
        s.Writer.Write(FrameType.Switchover, sw);
        s.Writer.Flush();
        var (type, payload) = s.Receive();
        Assert.Equal(FrameType.SwitchoverReady, type);
        return ControlJson.Decode<SwitchoverReady>(payload, "switchover ready");
    }

    [Fact]
    public void Honest_source_gets_its_vm_running_at_the_destination()
    {
        using var s = new Session();
        SendEverythingButSwitchover(s);
        SwitchoverReady ready = Switch(s, TrueDigest());
        Assert.True(ready.DigestMatches, ready.Problem);
        Assert.Equal(MemoryDigest.Format(TrueDigest()), ready.DestinationDigest);
        s.Writer.Write(FrameType.Commit, []);
        s.Writer.Flush();
        var (type, _) = s.Receive();
        Assert.Equal(FrameType.Resumed, type);

        var (vm, error) = s.Result();
        Assert.Null(error);
        Assert.NotNull(vm);
        Assert.Equal(VmRunState.Running, vm.State);
        Assert.Equal("hand", vm.Id);
        Assert.Equal(77UL, vm.TotalOps);
        Assert.Equal(PageThree(), vm.Memory.PageView(3).ToArray());
        Assert.False(vm.Memory.IsPopulated(7));
        Assert.Equal(TrueDigest(), vm.Memory.ComputeDigest());
    }

    [Fact]
    public void Lying_source_is_told_the_digest_does_not_match_and_gets_nothing()
    {
        using var s = new Session();
        SendEverythingButSwitchover(s);
        SwitchoverReady ready = Switch(s, TrueDigest() ^ 1);
        Assert.False(ready.DigestMatches);
        Assert.Equal("page contents differ", ready.Problem);
        Assert.Equal(MemoryDigest.Format(TrueDigest()), ready.DestinationDigest);
        // The liar commits anyway: too late, the destination has already discarded everything.
        try
        {
            s.Writer.Write(FrameType.Commit, []);
            s.Writer.Flush();
        }
        catch (IOException)
        {
        }

        var (vm, error) = s.Result();
        Assert.Null(vm);
        var failure = Assert.IsType<MigrationFailedException>(error);
        Assert.Equal(MigrationFailure.DigestMismatch, failure.Kind);
        Assert.Contains("switchover refused: page contents differ", failure.Message);
    }

    [Theory]
    [InlineData(false, true, "vCPU state missing")]
    [InlineData(true, false, "device state missing")]
    public void Switchover_without_the_whole_state_is_refused(bool vcpu, bool device, string problem)
    {
        using var s = new Session();
        SendEverythingButSwitchover(s, vcpu, device);
        SwitchoverReady ready = Switch(s, TrueDigest());
        Assert.False(ready.DigestMatches);
        Assert.Equal(problem, ready.Problem);
        var (vm, error) = s.Result();
        Assert.Null(vm);
        Assert.Equal(MigrationFailure.DigestMismatch, Assert.IsType<MigrationFailedException>(error).Kind);
    }

    [Fact]
    public void Page_beyond_the_offered_memory_ends_the_migration_with_nothing_kept()
    {
        using var s = new Session();
        s.Writer.Write(FrameType.Offer, ControlJson.Encode(TheOffer));
        Assert.Equal(FrameType.OfferAccepted, s.Receive().Type);
        byte[] batch = new byte[PageBatchCodec.HeaderSize + 2 * PageBatchCodec.EntryHeaderSize];
        PageBatchCodec.WriteHeader(batch, 2, 1);
        PageBatchCodec.WriteEntryHeader(batch.AsSpan(8), 1, PageEncoding.Zero);
        PageBatchCodec.WriteEntryHeader(batch.AsSpan(16), GuestPages, PageEncoding.Zero);
        s.Writer.Write(FrameType.PageBatch, batch);
        s.Writer.Flush();

        var (vm, error) = s.Result();
        Assert.Null(vm);
        var pe = Assert.IsType<ProtocolException>(error);
        Assert.Equal(ProtocolErrorKind.MalformedFrame, pe.Kind);
        Assert.Contains($"names page {GuestPages}; the guest has {GuestPages}", pe.Message);
    }

    [Fact]
    public void Commit_before_switchover_is_an_unexpected_frame()
    {
        using var s = new Session();
        s.Writer.Write(FrameType.Offer, ControlJson.Encode(TheOffer));
        Assert.Equal(FrameType.OfferAccepted, s.Receive().Type);
        s.Writer.Write(FrameType.Commit, []);
        s.Writer.Flush();
        var (vm, error) = s.Result();
        Assert.Null(vm);
        var pe = Assert.IsType<ProtocolException>(error);
        Assert.Equal(ProtocolErrorKind.UnexpectedFrame, pe.Kind);
    }

    [Fact]
    public void Pages_before_the_offer_are_an_unexpected_frame()
    {
        using var s = new Session();
        byte[] batch = new byte[PageBatchCodec.HeaderSize];
        s.Writer.Write(FrameType.PageBatch, batch);
        s.Writer.Flush();
        var (vm, error) = s.Result();
        Assert.Null(vm);
        var pe = Assert.IsType<ProtocolException>(error);
        Assert.Equal(ProtocolErrorKind.UnexpectedFrame, pe.Kind);
        Assert.Equal("expected Offer, got PageBatch", pe.Message);
    }

    [Fact]
    public void Offer_over_the_destination_limit_is_refused_with_an_abort_frame()
    {
        using var s = new Session(new DestinationLimits { MaxMemoryBytes = MemoryBytes / 2 });
        s.Writer.Write(FrameType.Offer, ControlJson.Encode(TheOffer));
        s.Writer.Flush();
        var (type, payload) = s.Receive();
        Assert.Equal(FrameType.Abort, type);
        Assert.Contains("this agent accepts at most", ControlJson.Decode<Abort>(payload, "abort").Reason);
        var (vm, error) = s.Result();
        Assert.Null(vm);
        Assert.Equal(MigrationFailure.Refused, Assert.IsType<MigrationFailedException>(error).Kind);
    }

    [Fact]
    public void Source_abort_ends_the_migration_with_its_reason()
    {
        using var s = new Session();
        s.Writer.Write(FrameType.Offer, ControlJson.Encode(TheOffer));
        Assert.Equal(FrameType.OfferAccepted, s.Receive().Type);
        s.Writer.Write(FrameType.Abort, ControlJson.Encode(new Abort { Reason = "operator cancelled" }));
        s.Writer.Flush();
        var (vm, error) = s.Result();
        Assert.Null(vm);
        var failure = Assert.IsType<MigrationFailedException>(error);
        Assert.Equal(MigrationFailure.Aborted, failure.Kind);
        Assert.Equal("source aborted: operator cancelled", failure.Message);
    }
}
