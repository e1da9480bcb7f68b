using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Tests.Support;
using Ferry.Vm.Cpu;

namespace Ferry.Tests.Protocol;

/// <summary>
/// The exact bytes of every v1 frame type, frozen. Each expected literal is laid out as in
/// FrameHeader.cs: <c>checksum(8) | type(1) flags(1) reserved(2) | length(4) | sequence(8) | payload</c>,
/// all little-endian. Only the checksum was taken from a run (XxHash3 cannot be done by hand);
/// <see cref="Checksum_is_xxhash3_of_everything_after_it"/> ties it to its definition, and every
/// other byte was checked against the documented layout. If one of these fails, the wire format
/// changed: that needs a new protocol version, not a new literal.
/// </summary>
public sealed class GoldenFrameTests
{
    // Source → destination sequence numbers of a plausible conversation; destination → source counts separately.
    private const ulong SeqOffer = 0, SeqBatch = 1, SeqRoundEnd = 2, SeqVcpu = 3, SeqDevice = 4, SeqSwitchover = 5, SeqCommit = 6, SeqAbort = 7;
    private const ulong SeqAccepted = 0, SeqReady = 1, SeqResumed = 2;

    internal static readonly Offer SampleOffer = SampleMessages.Offer;

    private const string OfferJson =
        """{"migrationId":"m-1","vmId":"vm-7","vmName":"web","memoryBytes":1048576,"vcpus":2,"workload":"idle","opsLimitPerVcpu":null,"technique":"precopy","sourceHost":"src","vcpuStateBytes":160}""";

    private static readonly OfferAccepted SampleAccepted = SampleMessages.Accepted;
    private const string AcceptedJson = """{"destinationHost":"dst","os":"Linux","processorCount":2,"pageInstall":"uffd","pageInstallReason":"uffd: test"}""";

    private static readonly DeviceState SampleDevice = SampleMessages.Device;
    private const string DeviceJson = """{"nicAddress":"vnic:vm-7","throttlePercent":0}""";

    private static readonly SwitchoverReady SampleReady = SampleMessages.Ready;
    private const string ReadyJson = """{"digestMatches":true,"destinationDigest":"0123456789abcdef","destinationHashMs":1.5,"problem":null}""";

    private static readonly Resumed SampleResumed = SampleMessages.Resumed;
    private const string ResumedJson = """{"resumeMs":12.25}""";

    private static readonly Abort SampleAbort = SampleMessages.Abort;
    private const string AbortJson = """{"reason":"operator cancelled"}""";

    internal static byte[] SamplePage() => SampleMessages.Page();

    internal static byte[] SampleBatchPayload() => SampleMessages.BatchPayload();

    internal static VcpuState SampleVcpu()
    {
        var s = new VcpuState();
        for (int i = 0; i < RegisterFile.Count; i++)
        {
            s.R[i] = (ulong)(i + 1) * 0x0101010101010101UL;
        }
        s.Pc = 0xff;
        s.Ops = 1000;
        return s;
    }

    internal static byte[] SampleVcpuPayload()
    {
        byte[] regs = new byte[VcpuState.SizeInBytes];
        VcpuState.Write(SampleVcpu(), regs);
        byte[] payload = new byte[VcpuStateMessage.HeaderSize + regs.Length];
        int n = VcpuStateMessage.Write(payload, 1, regs);
        Assert.Equal(payload.Length, n);
        return payload;
    }

    internal static byte[] Json(string text) => Encoding.UTF8.GetBytes(text);

    private static void AssertGolden(string expected, FrameType type, byte[] payload, ulong sequence)
    {
        byte[] frame = FrameWriter.Encode(type, payload, sequence);
        Assert.Equal(Hex.Normalize(expected), Hex.Of(frame));
    }

    [Fact]
    public void Offer_frame()
    {
        byte[] payload = ControlJson.Encode(SampleOffer);
        Assert.Equal(OfferJson, Encoding.UTF8.GetString(payload));
        Assert.Equal(185, payload.Length);
        AssertGolden("0efb98c20616974f | 01 00 0000 | b9000000 | 0000000000000000" + Hex.Of(Json(OfferJson)),
            FrameType.Offer, payload, SeqOffer);
    }

    [Fact]
    public void OfferAccepted_frame()
    {
        byte[] payload = ControlJson.Encode(SampleAccepted);
        Assert.Equal(AcceptedJson, Encoding.UTF8.GetString(payload));
        AssertGolden("69ebb9cd2ebd3506 | 02 00 0000 | 6f000000 | 0000000000000000" + Hex.Of(Json(AcceptedJson)),
            FrameType.OfferAccepted, payload, SeqAccepted);
    }

    [Fact]
    public void PageBatch_frame_with_a_raw_and_a_zero_page()
    {
        string expected =
            "fec6e68529ec9c74 | 03 00 0000 | 18100000 | 0100000000000000" +
            "| 02000000 01000000" +          // count 2, round 1
            "| 0500000000000000" +           // entry: encoding 0 (raw) << 56 | page 5
            Hex.Of(SamplePage()) +           // 4096 raw bytes
            "| 5634120000000001";            // entry: encoding 1 (zero) << 56 | page 0x123456, no bytes
        AssertGolden(expected, FrameType.PageBatch, SampleBatchPayload(), SeqBatch);
    }

    [Fact]
    public void RoundEnd_frame()
    {
        byte[] payload = new byte[RoundEnd.Size];
        new RoundEnd(1, 2).Write(payload);
        AssertGolden("702da24785ba2432 | 04 00 0000 | 10000000 | 0200000000000000 | 01000000 00000000 0200000000000000",
            FrameType.RoundEnd, payload, SeqRoundEnd);
    }

    [Fact]
    public void RoundAck_frame_has_the_round_end_payload()
    {
        byte[] payload = new byte[RoundEnd.Size];
        new RoundEnd(1, 2).Write(payload);
        AssertGolden("cb504be6d443ff0f | 0c 00 0000 | 10000000 | 0100000000000000 | 01000000 00000000 0200000000000000",
            FrameType.RoundAck, payload, 1);
    }

    [Fact]
    public void VcpuState_frame()
    {
        string expected =
            "5682992f4f27230a | 05 00 0000 | a8000000 | 0300000000000000" +
            "| 01000000 a0000000" +          // vCPU 1, 160 register bytes
            "| 0101010101010101 0202020202020202 0303030303030303 0404040404040404" +
            "  0505050505050505 0606060606060606 0707070707070707 0808080808080808" +
            "  0909090909090909 0a0a0a0a0a0a0a0a 0b0b0b0b0b0b0b0b 0c0c0c0c0c0c0c0c" +
            "  0d0d0d0d0d0d0d0d 0e0e0e0e0e0e0e0e 0f0f0f0f0f0f0f0f 1010101010101010" +   // R0..R15
            "| ff00000000000000 e803000000000000 0000000000000000 0000000000000000";    // pc, ops, flags, reserved
        AssertGolden(expected, FrameType.VcpuState, SampleVcpuPayload(), SeqVcpu);
    }

    [Fact]
    public void DeviceState_frame()
    {
        byte[] payload = ControlJson.Encode(SampleDevice);
        Assert.Equal(DeviceJson, Encoding.UTF8.GetString(payload));
        AssertGolden("59b3a3f8e7789eba | 06 00 0000 | 2e000000 | 0400000000000000" + Hex.Of(Json(DeviceJson)),
            FrameType.DeviceState, payload, SeqDevice);
    }

    [Fact]
    public void Switchover_frame()
    {
        byte[] payload = new byte[Switchover.Size];
        new Switchover(0x0123456789abcdefUL, PagesSent: 2, GuestPages: 256, Vcpus: 2).Write(payload);
        AssertGolden("720495fe5d57588a | 07 00 0000 | 20000000 | 0500000000000000" +
            "| efcdab8967452301 0200000000000000 0001000000000000 02000000 00000000",
            FrameType.Switchover, payload, SeqSwitchover);
    }

    [Fact]
    public void SwitchoverReady_frame()
    {
        byte[] payload = ControlJson.Encode(SampleReady);
        Assert.Equal(ReadyJson, Encoding.UTF8.GetString(payload));
        AssertGolden("26f83fcaffdd00e3 | 08 00 0000 | 64000000 | 0100000000000000" + Hex.Of(Json(ReadyJson)),
            FrameType.SwitchoverReady, payload, SeqReady);
    }

    [Fact]
    public void Commit_frame_has_no_payload()
    {
        AssertGolden("d5baba81589e0968 | 09 00 0000 | 00000000 | 0600000000000000", FrameType.Commit, [], SeqCommit);
    }

    [Fact]
    public void Resumed_frame()
    {
        byte[] payload = ControlJson.Encode(SampleResumed);
        Assert.Equal(ResumedJson, Encoding.UTF8.GetString(payload));
        AssertGolden("5f59c67cff4b96c1 | 0a 00 0000 | 12000000 | 0200000000000000" + Hex.Of(Json(ResumedJson)),
            FrameType.Resumed, payload, SeqResumed);
    }

    [Fact]
    public void Abort_frame()
    {
        byte[] payload = ControlJson.Encode(SampleAbort);
        Assert.Equal(AbortJson, Encoding.UTF8.GetString(payload));
        AssertGolden("7cfbde6969bbaa28 | 0b 00 0000 | 1f000000 | 0700000000000000" + Hex.Of(Json(AbortJson)),
            FrameType.Abort, payload, SeqAbort);
    }

    [Fact]
    public void Frame_type_numbers_are_wire_constants()
    {
        Assert.Equal(
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
            new[] { FrameType.Offer, FrameType.OfferAccepted, FrameType.PageBatch, FrameType.RoundEnd, FrameType.VcpuState,
                FrameType.DeviceState, FrameType.Switchover, FrameType.SwitchoverReady, FrameType.Commit, FrameType.Resumed, FrameType.Abort,
                FrameType.RoundAck, FrameType.PageRequest, FrameType.PendingPages, FrameType.PostCopyEnd, FrameType.PostCopyComplete,
                FrameType.PostCopyResume, FrameType.PageChannel }
                .Select(t => (int)t));
        Assert.Equal(18, Enum.GetValues<FrameType>().Length);
        Assert.Equal(0, (int)PageEncoding.Raw);
        Assert.Equal(1, (int)PageEncoding.Zero);
    }

    [Fact]
    public void A_page_channel_frame_has_its_exact_bytes()
    {
        byte[] payload = ControlJson.Encode(new PageChannelHello { MigrationId = "m-1", Channel = 1, Generation = 0 });
        Assert.Equal("""{"migrationId":"m-1","channel":1,"generation":0}""", System.Text.Encoding.UTF8.GetString(payload));
        byte[] frame = FrameWriter.Encode(FrameType.PageChannel, payload, sequence: 0);
        Assert.Equal((byte)18, frame[8]);
        Assert.Equal((uint)payload.Length, BitConverter.ToUInt32(frame, 12));
        Assert.Equal(System.IO.Hashing.XxHash3.HashToUInt64(frame.AsSpan(8)), BitConverter.ToUInt64(frame, 0));
    }

    [Fact]
    public void Page_connection_counts_are_left_out_when_zero_so_v1_offers_keep_their_bytes()
    {
        Assert.DoesNotContain("pageConnections", System.Text.Encoding.UTF8.GetString(ControlJson.Encode(SampleOffer)));
        string withTwo = System.Text.Encoding.UTF8.GetString(ControlJson.Encode(SampleOffer with { PageConnections = 2 }));
        Assert.EndsWith(""","pageConnections":2}""", withTwo);
        Assert.Equal(2, ControlJson.Decode<Offer>(System.Text.Encoding.UTF8.GetBytes(withTwo), "offer").PageConnections);
        Assert.Equal(0, ControlJson.Decode<OfferAccepted>("""{"destinationHost":"d","os":"","processorCount":1,"pageInstall":"copy","pageInstallReason":""}"""u8, "accepted").PageConnections);
    }

    [Fact]
    public void Checksum_is_xxhash3_of_everything_after_it()
    {
        foreach (var (type, payload, seq) in SourceFrames().Concat(DestinationFrames()))
        {
            byte[] frame = FrameWriter.Encode(type, payload, seq);
            Assert.Equal(FrameHeader.Size + payload.Length, frame.Length);
            Assert.Equal(XxHash3.HashToUInt64(frame.AsSpan(8)), BinaryPrimitives.ReadUInt64LittleEndian(frame));
        }
    }

    private static IEnumerable<(FrameType Type, byte[] Payload, ulong Seq)> SourceFrames()
    {
        byte[] roundEnd = new byte[RoundEnd.Size];
        new RoundEnd(1, 2).Write(roundEnd);
        byte[] sw = new byte[Switchover.Size];
        new Switchover(0x0123456789abcdefUL, 2, 256, 2).Write(sw);
        yield return (FrameType.Offer, ControlJson.Encode(SampleOffer), SeqOffer);
        yield return (FrameType.PageBatch, SampleBatchPayload(), SeqBatch);
        yield return (FrameType.RoundEnd, roundEnd, SeqRoundEnd);
        yield return (FrameType.VcpuState, SampleVcpuPayload(), SeqVcpu);
        yield return (FrameType.DeviceState, ControlJson.Encode(SampleDevice), SeqDevice);
        yield return (FrameType.Switchover, sw, SeqSwitchover);
        yield return (FrameType.Commit, [], SeqCommit);
        yield return (FrameType.Abort, ControlJson.Encode(SampleAbort), SeqAbort);
    }

    private static IEnumerable<(FrameType Type, byte[] Payload, ulong Seq)> DestinationFrames()
    {
        yield return (FrameType.OfferAccepted, ControlJson.Encode(SampleAccepted), SeqAccepted);
        yield return (FrameType.SwitchoverReady, ControlJson.Encode(SampleReady), SeqReady);
        yield return (FrameType.Resumed, ControlJson.Encode(SampleResumed), SeqResumed);
    }

    [Fact]
    public void Source_direction_round_trips_through_the_reader()
    {
        var wire = new MemoryStream();
        foreach (var (type, payload, seq) in SourceFrames())
        {
            wire.Write(FrameWriter.Encode(type, payload, seq));
        }
        wire.Position = 0;
        var reader = new FrameReader(wire);

        Frame f = reader.Read();
        Assert.Equal((FrameType.Offer, 0UL), (f.Type, f.Sequence));
        Assert.Equal(SampleOffer, ControlJson.Decode<Offer>(f.Payload, "offer"));

        f = reader.Read();
        Assert.Equal((FrameType.PageBatch, 1UL), (f.Type, f.Sequence));
        Assert.Equal(2, PageBatchCodec.Validate(f.Payload, guestPages: 0x123457, out int round));
        Assert.Equal(1, round);
        var entries = new List<(long Page, PageEncoding Encoding, byte[] Data)>();
        foreach (var e in PageBatchCodec.Entries(f.Payload))
        {
            entries.Add((e.Page, e.Encoding, e.Data.ToArray()));
        }
        Assert.Equal(2, entries.Count);
        Assert.Equal((5L, PageEncoding.Raw), (entries[0].Page, entries[0].Encoding));
        Assert.Equal(SamplePage(), entries[0].Data);
        Assert.Equal((0x123456L, PageEncoding.Zero), (entries[1].Page, entries[1].Encoding));
        Assert.Empty(entries[1].Data);

        f = reader.Read();
        Assert.Equal((FrameType.RoundEnd, 2UL), (f.Type, f.Sequence));
        Assert.Equal(new RoundEnd(1, 2), RoundEnd.Read(f.Payload));

        f = reader.Read();
        Assert.Equal((FrameType.VcpuState, 3UL), (f.Type, f.Sequence));
        Assert.Equal(1, VcpuStateMessage.Read(f.Payload, VcpuState.SizeInBytes, vcpuCount: 2, out ReadOnlySpan<byte> regs));
        VcpuState back = VcpuState.Read(regs);
        byte[] backBytes = new byte[VcpuState.SizeInBytes];
        VcpuState.Write(back, backBytes);
        Assert.Equal(SampleVcpuPayload()[VcpuStateMessage.HeaderSize..], backBytes);
        Assert.Equal(0x0202020202020202UL, back.R[1]);
        Assert.Equal(1000UL, back.Ops);

        f = reader.Read();
        Assert.Equal((FrameType.DeviceState, 4UL), (f.Type, f.Sequence));
        Assert.Equal(SampleDevice, ControlJson.Decode<DeviceState>(f.Payload, "device state"));

        f = reader.Read();
        Assert.Equal((FrameType.Switchover, 5UL), (f.Type, f.Sequence));
        Assert.Equal(new Switchover(0x0123456789abcdefUL, 2, 256, 2), Switchover.Read(f.Payload));

        f = reader.Read();
        Assert.Equal((FrameType.Commit, 6UL), (f.Type, f.Sequence));
        Assert.Equal(0, f.Payload.Length);

        f = reader.Read();
        Assert.Equal((FrameType.Abort, 7UL), (f.Type, f.Sequence));
        Assert.Equal(SampleAbort, ControlJson.Decode<Abort>(f.Payload, "abort"));

        Assert.Equal(wire.Length, reader.BytesRead);
        var end = Assert.Throws<ProtocolException>(() => reader.Read());
        Assert.Equal(ProtocolErrorKind.Truncated, end.Kind);
        Assert.Contains("before frame 8", end.Message);
    }

    [Fact]
    public void Destination_direction_round_trips_through_the_reader()
    {
        var wire = new MemoryStream();
        foreach (var (type, payload, seq) in DestinationFrames())
        {
            wire.Write(FrameWriter.Encode(type, payload, seq));
        }
        wire.Position = 0;
        var reader = new FrameReader(wire);

        Frame f = reader.Read();
        Assert.Equal((FrameType.OfferAccepted, 0UL), (f.Type, f.Sequence));
        Assert.Equal(SampleAccepted, ControlJson.Decode<OfferAccepted>(f.Payload, "offer accepted"));
        f = reader.Read();
        Assert.Equal((FrameType.SwitchoverReady, 1UL), (f.Type, f.Sequence));
        Assert.Equal(SampleReady, ControlJson.Decode<SwitchoverReady>(f.Payload, "switchover ready"));
        f = reader.Read();
        Assert.Equal((FrameType.Resumed, 2UL), (f.Type, f.Sequence));
        Assert.Equal(SampleResumed, ControlJson.Decode<Resumed>(f.Payload, "resumed"));
    }

    [Fact]
    public void Writer_numbers_frames_from_zero_and_counts_bytes()
    {
        var wire = new MemoryStream();
        var writer = new FrameWriter(wire);
        writer.Write(FrameType.Commit, []);
        writer.Write(FrameType.Commit, []);
        Assert.Equal(2 * FrameHeader.Size, writer.BytesWritten);
        byte[] bytes = wire.ToArray();
        Assert.Equal(FrameWriter.Encode(FrameType.Commit, [], 0).Concat(FrameWriter.Encode(FrameType.Commit, [], 1)), bytes);
    }

    [Fact]
    public void Writer_error_is_sticky()
    {
        var broken = new TruncatingStream(new MemoryStream(), limit: 30);
        var writer = new FrameWriter(broken);
        writer.Write(FrameType.Commit, []);
        Assert.Throws<IOException>(() => writer.Write(FrameType.Commit, []));
        Assert.IsType<IOException>(writer.Error);
        // Every later call rethrows the first error, even ones that would not touch the stream.
        Assert.Throws<IOException>(() => writer.Begin(FrameType.Commit));
        Assert.Throws<IOException>(() => writer.Flush());
    }
}
