using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using CsCheck;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Tests.Support;
using Ferry.Vm.Cpu;

namespace Ferry.Tests.Protocol;

/// <summary>
/// Whatever arrives, the decoders answer with a <see cref="ProtocolException"/> of the right kind
/// and a message that says what was wrong — never another exception type, never a hang, and
/// never a payload handed out before the whole frame was checked.
/// </summary>
public sealed class DecoderRobustnessTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    /// <summary>Reads frames until the reader throws; returns the exception (asserting its exact type).</summary>
    private static ProtocolException ReadAll(byte[] wire, out int framesRead)
    {
        // A MemoryStream never blocks, so a reader that does not return is looping: the tests
        // bound each property as a whole (Bounded.Do) rather than each read.
        framesRead = 0;
        var reader = new FrameReader(new MemoryStream(wire));
        try
        {
            while (true)
            {
                reader.Read();
                framesRead++;
            }
        }
        catch (Exception ex)
        {
            return Assert.IsType<ProtocolException>(ex);
        }
    }

    private static ProtocolException ReadFirst(byte[] wire)
    {
        ProtocolException ex = ReadAll(wire, out int frames);
        Assert.Equal(0, frames);
        return ex;
    }

    /// <summary>A frame with arbitrary header fields and a checksum that matches them.</summary>
    internal static byte[] RawFrame(byte type, ReadOnlySpan<byte> payload, ulong sequence = 0, byte flags = 0, ushort reserved = 0, uint? length = null)
    {
        byte[] f = new byte[FrameHeader.Size + payload.Length];
        f[8] = type;
        f[9] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(10), reserved);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(12), length ?? (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(16), sequence);
        payload.CopyTo(f.AsSpan(FrameHeader.Size));
        BinaryPrimitives.WriteUInt64LittleEndian(f, XxHash3.HashToUInt64(f.AsSpan(8)));
        return f;
    }

    private static byte[] RoundEndFrame(ulong sequence = 0)
    {
        byte[] p = new byte[RoundEnd.Size];
        new RoundEnd(3, 42).Write(p);
        return FrameWriter.Encode(FrameType.RoundEnd, p, sequence);
    }

    [Fact]
    public void Empty_stream_is_truncated_before_the_first_frame()
    {
        ProtocolException ex = ReadFirst([]);
        Assert.Equal(ProtocolErrorKind.Truncated, ex.Kind);
        Assert.Equal("stream ended before frame 0", ex.Message);
    }

    [Fact]
    public void Truncated_header_is_reported_with_how_much_arrived()
    {
        byte[] frame = RoundEndFrame();
        for (int cut = 1; cut < FrameHeader.Size; cut++)
        {
            ProtocolException ex = ReadFirst(frame[..cut]);
            Assert.Equal(ProtocolErrorKind.Truncated, ex.Kind);
            Assert.Contains("frame header", ex.Message);
            Assert.Contains($"{cut} of {FrameHeader.Size} bytes", ex.Message);
        }
    }

    [Fact]
    public void Truncated_payload_is_reported_and_nothing_is_returned()
    {
        byte[] frame = FrameWriter.Encode(FrameType.PageBatch, GoldenFrameTests.SampleBatchPayload(), 0);
        foreach (int missing in new[] { 1, 8, 4096, frame.Length - FrameHeader.Size })
        {
            ProtocolException ex = ReadFirst(frame[..^missing]);
            Assert.Equal(ProtocolErrorKind.Truncated, ex.Kind);
            Assert.Contains("PageBatch payload", ex.Message);
            Assert.Contains($"{frame.Length - FrameHeader.Size - missing} of {frame.Length - FrameHeader.Size} bytes", ex.Message);
        }
    }

    [Fact]
    public void Second_frame_cut_short_is_reported_after_the_first_is_delivered()
    {
        byte[] wire = [.. RoundEndFrame(0), .. RoundEndFrame(1)[..30]];
        ProtocolException ex = ReadAll(wire, out int frames);
        Assert.Equal(1, frames);
        Assert.Equal(ProtocolErrorKind.Truncated, ex.Kind);
        Assert.Contains("inside frame 1", ex.Message);
    }

    [Fact]
    public void Bad_checksum_is_a_checksum_mismatch_naming_the_frame()
    {
        byte[] frame = RoundEndFrame();
        frame[0] ^= 0x01;
        ProtocolException ex = ReadFirst(frame);
        Assert.Equal(ProtocolErrorKind.ChecksumMismatch, ex.Kind);
        Assert.Contains("checksum mismatch in frame 0 (RoundEnd, 16 bytes)", ex.Message);
    }

    [Fact]
    public void Corrupted_payload_byte_is_a_checksum_mismatch()
    {
        byte[] frame = FrameWriter.Encode(FrameType.PageBatch, GoldenFrameTests.SampleBatchPayload(), 0);
        frame[FrameHeader.Size + 100] ^= 0x80;
        ProtocolException ex = ReadFirst(frame);
        Assert.Equal(ProtocolErrorKind.ChecksumMismatch, ex.Kind);
        Assert.Contains("checksum mismatch", ex.Message);
    }

    /// <summary>
    /// The kind a reader must report when bit <paramref name="bit"/> of a single well-formed frame
    /// (alone on the stream) is flipped. Every header byte but the length is covered by the
    /// checksum before it is interpreted; a damaged length can only make the frame too large,
    /// longer than the stream (truncated) or shorter than it was (the checksum then covers the
    /// wrong bytes).
    /// </summary>
    private static ProtocolErrorKind ExpectedForFlip(byte[] frame, int bit)
    {
        int b = bit / 8;
        if (b is >= 12 and < 16)
        {
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(frame.AsSpan(12)) ^ (1u << (bit - 96));
            if (length > FrameHeader.MaxPayload)
            {
                return ProtocolErrorKind.FrameTooLarge;
            }
            if (length > frame.Length - FrameHeader.Size)
            {
                return ProtocolErrorKind.Truncated;
            }
        }
        return ProtocolErrorKind.ChecksumMismatch;
    }

    private static readonly byte[][] FlipSubjects =
    [
        RoundEndFrame(),
        FrameWriter.Encode(FrameType.Offer, ControlJson.Encode(GoldenFrameTests.SampleOffer), 0),
        FrameWriter.Encode(FrameType.PageBatch, GoldenFrameTests.SampleBatchPayload(), 0),
        FrameWriter.Encode(FrameType.Commit, [], 0),
    ];

    [Fact]
    public void Any_flipped_bit_in_a_frame_is_detected_with_the_right_kind()
    {
        Bounded.Do(() => Gen.Int[0, FlipSubjects.Length - 1]
            .SelectMany(i => Gen.Int[0, FlipSubjects[i].Length * 8 - 1].Select(bit => (i, bit)))
            .Sample((i, bit) =>
            {
                byte[] frame = (byte[])FlipSubjects[i].Clone();
                frame[bit / 8] ^= (byte)(1 << (bit % 8));
                ProtocolException ex = ReadFirst(frame);
                Assert.True(ExpectedForFlip(FlipSubjects[i], bit) == ex.Kind,
                    $"frame {i}, bit {bit} (byte {bit / 8}): expected {ExpectedForFlip(FlipSubjects[i], bit)}, got {ex.Kind}: {ex.Message}");
            }, iter: 1000), Limit, "bit-flip property");
    }

    [Fact]
    public void Every_flipped_bit_of_the_header_is_detected_with_the_right_kind()
    {
        foreach (byte[] subject in FlipSubjects)
        {
            for (int bit = 0; bit < FrameHeader.Size * 8; bit++)
            {
                byte[] frame = (byte[])subject.Clone();
                frame[bit / 8] ^= (byte)(1 << (bit % 8));
                ProtocolException ex = ReadFirst(frame);
                Assert.True(ExpectedForFlip(subject, bit) == ex.Kind, $"header bit {bit}: expected {ExpectedForFlip(subject, bit)}, got {ex.Kind}: {ex.Message}");
            }
        }
    }

    [Fact]
    public void Random_garbage_only_ever_raises_protocol_exceptions()
    {
        Bounded.Do(() => Gen.Byte.Array[0, 300].Sample(bytes =>
        {
            ReadAll(bytes, out int frames);
            Assert.Equal(0, frames);
        }, iter: 1000), Limit, "garbage property");
    }

    [Fact]
    public void Garbage_after_valid_frames_only_raises_protocol_exceptions()
    {
        Bounded.Do(() => Gen.Byte.Array[1, 200].Sample(garbage =>
        {
            byte[] wire = [.. RoundEndFrame(0), .. RoundEndFrame(1), .. garbage];
            ReadAll(wire, out int frames);
            Assert.Equal(2, frames);
        }, iter: 300), Limit, "garbage-after-frames property");
    }

    [Theory]
    [InlineData(1UL, "frame sequence 1 where 0 was expected")]
    [InlineData(ulong.MaxValue, "frame sequence 18446744073709551615 where 0 was expected")]
    public void First_frame_with_the_wrong_sequence_is_rejected(ulong sequence, string message)
    {
        ProtocolException ex = ReadFirst(RoundEndFrame(sequence));
        Assert.Equal(ProtocolErrorKind.BadSequence, ex.Kind);
        Assert.Equal(message, ex.Message);
    }

    [Theory]
    [InlineData(0UL)] // repeat
    [InlineData(2UL)] // gap
    public void Repeated_or_skipped_sequence_is_rejected(ulong second)
    {
        ProtocolException ex = ReadAll([.. RoundEndFrame(0), .. RoundEndFrame(second)], out int frames);
        Assert.Equal(1, frames);
        Assert.Equal(ProtocolErrorKind.BadSequence, ex.Kind);
        Assert.Equal($"frame sequence {second} where 1 was expected", ex.Message);
    }

    [Theory]
    [InlineData(FrameHeader.MaxPayload + 1u)]
    [InlineData(uint.MaxValue)]
    public void Oversize_length_is_rejected_before_reading_the_payload(uint length)
    {
        // Only the header is on the stream: a reader that tried to read the payload would report Truncated.
        byte[] header = RawFrame((byte)FrameType.PageBatch, [], length: length);
        ProtocolException ex = ReadFirst(header);
        Assert.Equal(ProtocolErrorKind.FrameTooLarge, ex.Kind);
        Assert.Contains($"declares a {length}-byte payload; the limit is {FrameHeader.MaxPayload}", ex.Message);
    }

    [Fact]
    public void Largest_allowed_payload_round_trips()
    {
        byte[] payload = new byte[FrameHeader.MaxPayload];
        payload[^1] = 7;
        var reader = new FrameReader(new MemoryStream(FrameWriter.Encode(FrameType.DeviceState, payload, 0)));
        Frame f = reader.Read();
        Assert.Equal(FrameHeader.MaxPayload, f.Payload.Length);
        Assert.Equal(7, f.Payload[^1]);
    }

    [Fact]
    public void Writer_refuses_a_payload_over_the_limit()
    {
        var writer = new FrameWriter(new MemoryStream());
        writer.Begin(FrameType.PageBatch);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Complete(FrameHeader.MaxPayload + 1));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(19)]
    [InlineData(255)]
    public void Unknown_frame_type_is_malformed(byte type)
    {
        ProtocolException ex = ReadFirst(RawFrame(type, [1, 2, 3]));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Equal($"frame 0 has unknown type {type}", ex.Message);
    }

    [Theory]
    [InlineData(0x01)]
    [InlineData(0x80)]
    public void Nonzero_flags_are_malformed(byte flags)
    {
        ProtocolException ex = ReadFirst(RawFrame((byte)FrameType.Commit, [], flags: flags));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Contains($"flags 0x{flags:x2}; v1 defines none", ex.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(0x8000)]
    public void Nonzero_reserved_field_is_malformed(ushort reserved)
    {
        ProtocolException ex = ReadFirst(RawFrame((byte)FrameType.Commit, [], reserved: reserved));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Contains($"reserved field is {reserved}, expected 0", ex.Message);
    }

    // ---- Page batches ----

    private const long GuestPages = 1024;

    private static byte[] Batch(uint count, params (ulong Word, int DataBytes)[] entries)
    {
        var ms = new MemoryStream();
        Span<byte> u64 = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(u64, count);
        BinaryPrimitives.WriteUInt32LittleEndian(u64[4..], 1);
        ms.Write(u64);
        foreach (var (word, dataBytes) in entries)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(u64, word);
            ms.Write(u64);
            ms.Write(new byte[dataBytes]);
        }
        return ms.ToArray();
    }

    private static ulong Entry(long page, byte encoding) => ((ulong)encoding << 56) | (ulong)page;

    private static ProtocolException RejectBatch(byte[] payload)
    {
        var pe = Assert.IsType<ProtocolException>(Record.Exception(() => PageBatchCodec.Validate(payload, GuestPages, out _)));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, pe.Kind);
        return pe;
    }

    [Fact]
    public void Batch_with_valid_entries_is_accepted()
    {
        byte[] ok = Batch(3, (Entry(0, 0), 4096), (Entry(GuestPages - 1, 1), 0), (Entry(7, 0), 4096));
        Assert.Equal(3, PageBatchCodec.Validate(ok, GuestPages, out int round));
        Assert.Equal(1, round);
        Assert.Equal(0, PageBatchCodec.Validate(Batch(0), GuestPages, out _));
    }

    [Fact]
    public void Batch_naming_a_page_beyond_the_guest_is_rejected()
    {
        Assert.Contains("entry 1 names page 1024; the guest has 1024",
            RejectBatch(Batch(2, (Entry(3, 1), 0), (Entry(GuestPages, 1), 0))).Message);
        Assert.Contains("names page 72057594037927935",
            RejectBatch(Batch(1, (Entry((1L << 56) - 1, 0), 4096))).Message);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(0x7f)]
    [InlineData(0xff)]
    public void Batch_with_an_unknown_encoding_is_rejected(byte encoding)
    {
        Assert.Contains($"entry 0 has unknown encoding {encoding}", RejectBatch(Batch(1, (Entry(3, encoding), 0))).Message);
    }

    [Fact]
    public void Batch_with_trailing_bytes_is_rejected()
    {
        byte[] payload = [.. Batch(1, (Entry(3, 1), 0)), 0];
        Assert.Contains("1 unexpected trailing bytes", RejectBatch(payload).Message);
        Assert.Contains("4104 unexpected trailing bytes", RejectBatch(Batch(0, (Entry(3, 0), 4096))).Message);
    }

    [Theory]
    [InlineData(257u)]
    [InlineData(100_000u)]
    [InlineData(uint.MaxValue)]
    public void Batch_declaring_too_many_pages_is_rejected(uint count)
    {
        Assert.Contains($"at most {PageBatchCodec.MaxPagesPerBatch} are allowed", RejectBatch(Batch(count)).Message);
    }

    [Fact]
    public void Batch_with_fewer_entries_than_declared_is_rejected()
    {
        Assert.Contains("entry 1 of 2 is cut short", RejectBatch(Batch(2, (Entry(3, 1), 0))).Message);
    }

    [Fact]
    public void Batch_with_a_raw_page_missing_bytes_is_rejected()
    {
        Assert.Contains("entry 0 (page 3) is missing page bytes", RejectBatch(Batch(1, (Entry(3, 0), 4095))).Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void Batch_shorter_than_its_header_is_rejected(int length)
    {
        Assert.Contains("shorter than its header", RejectBatch(new byte[length]).Message);
    }

    [Fact]
    public void Random_batches_are_accepted_or_rejected_but_nothing_else()
    {
        Bounded.Do(() => Gen.Byte.Array[0, 64].Sample(bytes =>
        {
            Exception? ex = Record.Exception(() => PageBatchCodec.Validate(bytes, GuestPages, out _));
            Assert.True(ex is null or ProtocolException, $"unexpected {ex?.GetType().Name}: {ex?.Message}");
        }, iter: 2000), Limit, "page batch property");
    }

    // ---- Fixed-size binary messages ----

    [Theory]
    [InlineData(0)]
    [InlineData(15)]
    [InlineData(17)]
    public void RoundEnd_of_the_wrong_size_is_rejected(int size)
    {
        var ex = Assert.Throws<ProtocolException>(() => RoundEnd.Read(new byte[size]));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Equal($"round end payload must be 16 bytes, got {size}", ex.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(31)]
    [InlineData(33)]
    public void Switchover_of_the_wrong_size_is_rejected(int size)
    {
        var ex = Assert.Throws<ProtocolException>(() => Switchover.Read(new byte[size]));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Equal($"switchover payload must be 32 bytes, got {size}", ex.Message);
    }

    [Fact]
    public void VcpuState_for_a_vcpu_the_vm_does_not_have_is_rejected()
    {
        byte[] payload = GoldenFrameTests.SampleVcpuPayload(); // vCPU 1
        var ex = Assert.Throws<ProtocolException>(() => VcpuStateMessage.Read(payload, VcpuState.SizeInBytes, vcpuCount: 1, out _));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Equal("vCPU state for vCPU 1; the VM has 1", ex.Message);
    }

    [Theory]
    [InlineData(0, VcpuState.SizeInBytes)]          // too short for the header
    [InlineData(8 + VcpuState.SizeInBytes, 159)]    // declared length wrong
    [InlineData(8 + 159, VcpuState.SizeInBytes)]    // bytes missing
    [InlineData(8 + 161, VcpuState.SizeInBytes)]    // bytes left over
    public void VcpuState_of_the_wrong_size_is_rejected(int payloadSize, int declared)
    {
        byte[] payload = new byte[payloadSize];
        if (payloadSize >= 8)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), (uint)declared);
        }
        var ex = Assert.Throws<ProtocolException>(() => VcpuStateMessage.Read(payload, VcpuState.SizeInBytes, vcpuCount: 2, out _));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
    }

    [Fact]
    public void Random_binary_messages_are_accepted_or_rejected_but_nothing_else()
    {
        Gen.Byte.Array[0, 200].Sample(bytes =>
        {
            foreach (Action decode in new Action[]
            {
                () => RoundEnd.Read(bytes),
                () => Switchover.Read(bytes),
                () => VcpuStateMessage.Read(bytes, VcpuState.SizeInBytes, 4, out _),
            })
            {
                try
                {
                    decode();
                }
                catch (ProtocolException)
                {
                }
            }
        }, iter: 1000);
    }

    // ---- Control messages (JSON) ----

    public static TheoryData<string> MalformedJson => new()
    {
        "",
        "{",
        "{\"vmId\":",
        "not json",
        "[]",
        "42",
        "\"offer\"",
        "{\"vcpus\":\"two\"}",
        "{\"memoryBytes\":1e400}",
        "{\"vcpus\":99999999999}",
        "{\"vmId\":\"a\"} trailing",
        "{\"vmId\":\"a\",}",
        new string('[', 100) + new string(']', 100),
    };

    [Theory]
    [MemberData(nameof(MalformedJson))]
    public void Malformed_offer_json_is_a_malformed_frame(string json)
    {
        var ex = Assert.IsType<ProtocolException>(Record.Exception(() => ControlJson.Decode<Offer>(Encoding.UTF8.GetBytes(json), "offer")));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.StartsWith("offer message is not valid JSON", ex.Message);
    }

    [Fact]
    public void Null_control_message_is_a_malformed_frame()
    {
        var ex = Assert.IsType<ProtocolException>(Record.Exception(() => ControlJson.Decode<Abort>("null"u8, "abort")));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Equal("abort message is null", ex.Message);
    }

    [Theory]
    [InlineData("{\"workload\":null}")]
    [InlineData("{\"vmId\":null,\"vcpus\":1}")]
    [InlineData("{\"technique\":null}")]
    public void Null_where_the_message_declares_a_non_nullable_string_is_a_malformed_frame(string json)
    {
        // Otherwise a peer could plant nulls in fields the receiver treats as never null.
        var ex = Assert.IsType<ProtocolException>(Record.Exception(() => ControlJson.Decode<Offer>(Encoding.UTF8.GetBytes(json), "offer")));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
    }

    [Fact]
    public void Invalid_utf8_is_a_malformed_frame()
    {
        byte[] payload = [.. "{\"reason\":\""u8, 0xff, 0xfe, .. "\"}"u8];
        var ex = Assert.IsType<ProtocolException>(Record.Exception(() => ControlJson.Decode<Abort>(payload, "abort")));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
    }

    [Fact]
    public void Nullable_fields_may_be_null_and_unknown_fields_are_ignored()
    {
        var offer = ControlJson.Decode<Offer>("{\"vmId\":\"a\",\"opsLimitPerVcpu\":null,\"future\":[1,2]}"u8, "offer");
        Assert.Equal("a", offer.VmId);
        Assert.Null(offer.OpsLimitPerVcpu);
        var ready = ControlJson.Decode<SwitchoverReady>("{\"digestMatches\":false,\"problem\":null}"u8, "switchover ready");
        Assert.False(ready.DigestMatches);
        Assert.Null(ready.Problem);
    }

    [Fact]
    public void Random_json_payloads_only_ever_raise_protocol_exceptions()
    {
        Gen.Byte.Array[0, 120].Sample(bytes =>
        {
            foreach (Action decode in new Action[]
            {
                () => ControlJson.Decode<Offer>(bytes, "offer"),
                () => ControlJson.Decode<OfferAccepted>(bytes, "offer accepted"),
                () => ControlJson.Decode<DeviceState>(bytes, "device state"),
                () => ControlJson.Decode<SwitchoverReady>(bytes, "switchover ready"),
                () => ControlJson.Decode<Resumed>(bytes, "resumed"),
                () => ControlJson.Decode<Abort>(bytes, "abort"),
            })
            {
                try
                {
                    decode();
                }
                catch (ProtocolException)
                {
                }
            }
        }, iter: 1000);
    }

    [Fact]
    public void Json_shaped_fuzz_only_ever_raises_protocol_exceptions()
    {
        string[] pieces = ["{", "}", "[", "]", ":", ",", "\"vmId\"", "\"vcpus\"", "\"workload\"", "null", "1", "-1", "1e999", "\"x\"", "true", " "];
        Gen.Int[0, pieces.Length - 1].Array[0, 30].Sample(ix =>
        {
            byte[] bytes = Encoding.UTF8.GetBytes(string.Concat(ix.Select(i => pieces[i])));
            try
            {
                ControlJson.Decode<Offer>(bytes, "offer");
            }
            catch (ProtocolException)
            {
            }
        }, iter: 2000);
    }
}
