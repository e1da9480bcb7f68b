using System.Buffers.Binary;
using System.Text;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Tests.Protocol;

namespace Ferry.Fuzz;

/// <summary>
/// The seed corpus, from real encodings: the golden frames' sample messages (tests/Ferry.Tests/Protocol/SampleMessages.cs,
/// compiled in), put through the protocol's own encoders.
/// `ferry-fuzz seeds fuzz/corpus` writes them; the committed corpus adds inputs the fuzzer found.
/// </summary>
public static class Seeds
{


    private static readonly PostCopyComplete SampleComplete = new()
    {
        DigestMatches = true,
        DestinationDigest = "0123456789abcdef",
        Faults = 3,
        FaultLatencyP50Ms = 0.5,
        FaultLatencyP99Ms = 1.25,
        FaultLatencyMaxMs = 2,
        ResumeMs = 40,
        DuplicatePages = 0,
        FaultPath = "userfaultfd: test",
        ZeroFilledOnFault = 1,
        ResumeOps = 1000,
        RunOps = 5000,
        RunMs = 55.5,
    };

    private static readonly PostCopyResume SampleResume = new() { MigrationId = "m-1" };
    private static readonly PageChannelHello SampleChannel = new() { MigrationId = "m-1", Channel = 1, Generation = 0 };

    public static void WriteAll(string root)
    {
        Write(root, "frames", FrameSeeds());
        Write(root, "control-json", JsonSeeds());
        Write(root, "page-batch", PageBatchSeeds());
        Write(root, "binary", BinarySeeds());
        Write(root, "handshake", HandshakeSeeds());
        Write(root, "api-signature", SignatureSeeds());
    }

    private static void Write(string root, string target, IEnumerable<(string Name, byte[] Bytes)> seeds)
    {
        string dir = Path.Combine(root, target);
        Directory.CreateDirectory(dir);
        foreach (var (name, bytes) in seeds)
        {
            File.WriteAllBytes(Path.Combine(dir, "seed-" + name), bytes);
        }
    }



    /// <summary>Zero pages only (a post-copy push of never-written pages): no page bytes at all.</summary>
    private static byte[] ZeroBatch(int round, params long[] pages)
    {
        byte[] p = new byte[PageBatchCodec.HeaderSize + pages.Length * PageBatchCodec.EntryHeaderSize];
        PageBatchCodec.WriteHeader(p, pages.Length, round);
        for (int i = 0; i < pages.Length; i++)
        {
            PageBatchCodec.WriteEntryHeader(p.AsSpan(PageBatchCodec.HeaderSize + i * PageBatchCodec.EntryHeaderSize), pages[i], PageEncoding.Zero);
        }
        return p;
    }

    /// <summary>The golden vCPU 1: R[i] = (i + 1) × 0x0101010101010101, pc 0xff, ops 1000.</summary>
    private static byte[] SampleVcpu()
    {
        byte[] regs = new byte[160];
        for (int i = 0; i < 16; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(regs.AsSpan(8 * i), (ulong)(i + 1) * 0x0101010101010101UL);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(regs.AsSpan(128), 0xff);
        BinaryPrimitives.WriteUInt64LittleEndian(regs.AsSpan(136), 1000);
        byte[] payload = new byte[VcpuStateMessage.HeaderSize + regs.Length];
        VcpuStateMessage.Write(payload, 1, regs);
        return payload;
    }

    private static byte[] Fixed(int size, Action<byte[]> write)
    {
        byte[] b = new byte[size];
        write(b);
        return b;
    }

    private static byte[] RoundEndPayload() => Fixed(RoundEnd.Size, b => new RoundEnd(1, 2).Write(b));

    private static byte[] SwitchoverPayload() => Fixed(Switchover.Size, b => new Switchover(0x0123456789abcdefUL, 2, 1 << 21, 2).Write(b));

    private static byte[] PageRequestPayload() => Fixed(PageRequest.Size, b => new PageRequest(5).Write(b));

    private static byte[] PostCopyEndPayload() => Fixed(PostCopyEnd.Size, b => new PostCopyEnd(0x0123456789abcdefUL, 2).Write(b));

    private static byte[] PendingPayload(int firstWord, int words)
    {
        ulong[] w = new ulong[words];
        for (int i = 0; i < words; i++)
        {
            w[i] = i % 3 == 0 ? ulong.MaxValue : 0x8000000000000021UL;
        }
        byte[] b = new byte[PendingPagesMessage.HeaderSize + 8 * words];
        PendingPagesMessage.Write(b, firstWord, w);
        return b;
    }

    private static byte[] Stream(params (FrameType Type, byte[] Payload)[] frames)
    {
        using var ms = new MemoryStream();
        for (int i = 0; i < frames.Length; i++)
        {
            ms.Write(FrameWriter.Encode(frames[i].Type, frames[i].Payload, (ulong)i));
        }
        return ms.ToArray();
    }

    private static IEnumerable<(string, byte[])> FrameSeeds()
    {
        // Each direction of each kind of connection, as a whole stream…
        yield return ("precopy-source", Stream(
            (FrameType.Offer, ControlJson.Encode(SampleMessages.Offer)),
            (FrameType.PageBatch, SampleMessages.BatchPayload()),
            (FrameType.RoundEnd, RoundEndPayload()),
            (FrameType.VcpuState, SampleVcpu()),
            (FrameType.DeviceState, ControlJson.Encode(SampleMessages.Device)),
            (FrameType.Switchover, SwitchoverPayload()),
            (FrameType.Commit, []),
            (FrameType.Abort, ControlJson.Encode(SampleMessages.Abort))));
        yield return ("precopy-destination", Stream(
            (FrameType.OfferAccepted, ControlJson.Encode(SampleMessages.Accepted)),
            (FrameType.RoundAck, RoundEndPayload()),
            (FrameType.SwitchoverReady, ControlJson.Encode(SampleMessages.Ready)),
            (FrameType.Resumed, ControlJson.Encode(SampleMessages.Resumed))));
        yield return ("postcopy-source", Stream(
            (FrameType.PendingPages, PendingPayload(0, 4)),
            (FrameType.Switchover, SwitchoverPayload()),
            (FrameType.Commit, []),
            (FrameType.PageBatch, ZeroBatch(0, 7, 9, 11)),
            (FrameType.PostCopyEnd, PostCopyEndPayload())));
        yield return ("postcopy-destination", Stream(
            (FrameType.PageRequest, PageRequestPayload()),
            (FrameType.PostCopyComplete, ControlJson.Encode(SampleComplete))));
        yield return ("recovery", Stream(
            (FrameType.PostCopyResume, ControlJson.Encode(SampleResume)),
            (FrameType.PendingPages, PendingPayload(0, 2)),
            (FrameType.PageRequest, PageRequestPayload())));
        yield return ("page-channel", Stream(
            (FrameType.PageChannel, ControlJson.Encode(SampleChannel)),
            (FrameType.PageBatch, ZeroBatch(1, 3)),
            (FrameType.RoundEnd, RoundEndPayload())));
        // …and the short frames alone (smaller inputs mutate faster).
        yield return ("offer", Stream((FrameType.Offer, ControlJson.Encode(SampleMessages.Offer))));
        yield return ("round-end", Stream((FrameType.RoundEnd, RoundEndPayload())));
        yield return ("commit", Stream((FrameType.Commit, [])));
        yield return ("vcpu-state", Stream((FrameType.VcpuState, SampleVcpu())));
        yield return ("zero-batch", Stream((FrameType.PageBatch, ZeroBatch(2, 0, 1))));
    }

    private static byte[] Selected(FrameType[] types, FrameType type, byte[] payload) =>
        [(byte)Array.IndexOf(types, type), .. payload];

    private static byte[] Json(FrameType type, byte[] payload) => Selected(MessageDecoders.JsonTypes, type, payload);

    private static byte[] Json(FrameType type, string text) => Json(type, Encoding.UTF8.GetBytes(text));

    private static IEnumerable<(string, byte[])> JsonSeeds()
    {
        yield return ("offer", Json(FrameType.Offer, ControlJson.Encode(SampleMessages.Offer)));
        yield return ("offer-connections", Json(FrameType.Offer, ControlJson.Encode(SampleMessages.Offer with { PageConnections = 2, OpsLimitPerVcpu = 100, Technique = "postcopy" })));
        yield return ("offer-accepted", Json(FrameType.OfferAccepted, ControlJson.Encode(SampleMessages.Accepted with { PageConnections = 2 })));
        yield return ("device-state", Json(FrameType.DeviceState, ControlJson.Encode(SampleMessages.Device)));
        yield return ("switchover-ready", Json(FrameType.SwitchoverReady, ControlJson.Encode(SampleMessages.Ready)));
        yield return ("switchover-refused", Json(FrameType.SwitchoverReady, ControlJson.Encode(SampleMessages.Ready with { DigestMatches = false, Problem = "page contents differ" })));
        yield return ("resumed", Json(FrameType.Resumed, ControlJson.Encode(SampleMessages.Resumed)));
        yield return ("abort", Json(FrameType.Abort, ControlJson.Encode(SampleMessages.Abort)));
        yield return ("post-copy-complete", Json(FrameType.PostCopyComplete, ControlJson.Encode(SampleComplete)));
        yield return ("post-copy-resume", Json(FrameType.PostCopyResume, ControlJson.Encode(SampleResume)));
        yield return ("page-channel", Json(FrameType.PageChannel, ControlJson.Encode(SampleChannel)));
        // Documented edges: unknown members are ignored, escapes, numbers in other spellings.
        yield return ("abort-escapes", Json(FrameType.Abort, """{"reason":"caf\u00e9 \"q\" \ud83d\ude00\n","extra":[1,{"a":null}]}"""));
        yield return ("resumed-exponent", Json(FrameType.Resumed, """{"resumeMs":1.5e3}"""));
    }

    private static byte[] U32(uint v) => Fixed(4, b => BinaryPrimitives.WriteUInt32LittleEndian(b, v));

    private static IEnumerable<(string, byte[])> PageBatchSeeds()
    {
        yield return ("golden", [.. U32(0x200000), .. SampleMessages.BatchPayload()]);
        yield return ("zero-pages", [.. U32(16), .. ZeroBatch(3, 0, 15, 7)]);
        yield return ("empty", [.. U32(1), .. ZeroBatch(1)]);
    }

    private static byte[] Binary(FrameType type, uint a, uint b, byte[] payload) =>
        [.. Selected(MessageDecoders.BinaryTypes, type, []), .. U32(a), .. U32(b), .. payload];

    private static IEnumerable<(string, byte[])> BinarySeeds()
    {
        yield return ("round-end", Binary(FrameType.RoundEnd, 0, 0, RoundEndPayload()));
        yield return ("vcpu-state", Binary(FrameType.VcpuState, 2, 0, SampleVcpu()));
        yield return ("switchover", Binary(FrameType.Switchover, 0, 0, SwitchoverPayload()));
        yield return ("page-request", Binary(FrameType.PageRequest, 1024, 0, PageRequestPayload()));
        yield return ("post-copy-end", Binary(FrameType.PostCopyEnd, 0, 0, PostCopyEndPayload()));
        yield return ("pending-pages", Binary(FrameType.PendingPages, 4096, 0, PendingPayload(0, 64)));
        yield return ("pending-pages-later", Binary(FrameType.PendingPages, 4000, 32, PendingPayload(32, 31)));
    }

    private static byte[] Pattern(int length, int seed) => Enumerable.Range(0, length).Select(i => (byte)(i * 31 + seed)).ToArray();

    private static byte[] Hello(string magic, ushort version, ushort status, int size, byte[] tail)
    {
        byte[] b = new byte[size];
        Encoding.ASCII.GetBytes(magic).CopyTo(b, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(8), version);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(10), status);
        tail.CopyTo(b, 16);
        return b;
    }

    private static IEnumerable<(string, byte[])> HandshakeSeeds()
    {
        // What a source sends: ClientHello then its proof (which cannot match the server's fresh nonce).
        yield return ("client-hello-proof", [.. Hello("FERRYMIG", ProtocolVersion.Current, 0, 48, Pattern(32, 1)), .. Pattern(32, 2)]);
        yield return ("client-hello-v2", Hello("FERRYMIG", 2, 0, 48, Pattern(32, 3)));
        // What a destination sends: ServerHello then a verdict.
        yield return ("server-hello-ok", [.. Hello("FERRYACK", ProtocolVersion.Current, 0, 80, Pattern(64, 4)), .. "FERRY-OK"u8]);
        yield return ("server-hello-unsupported", Hello("FERRYACK", 2, 1, 80, new byte[64]));
        // Another protocol's greeting.
        yield return ("http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
    }

    private static IEnumerable<(string, byte[])> SignatureSeeds()
    {
        yield return ("post-migration", ApiSignatureTarget.Signed("POST", "/v1/migrations", """{"vmId":"vm-7","to":"http://127.0.0.1:7200","technique":"precopy"}"""));
        yield return ("get-vms", ApiSignatureTarget.Signed("GET", "/v1/vms?state=running", ""));
        yield return ("delete-vm", ApiSignatureTarget.Signed("DELETE", "/v1/vms/x", ""));
    }
}
