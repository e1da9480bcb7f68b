using System.Buffers.Binary;
using System.IO.Hashing;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Handshake;
using Ferry.Protocol.Messages;

using Ferry.Tests.Support;

namespace Ferry.Fuzz;

/// <summary>One fuzz entry point: a decoder fed with one input, which may fail only as documented.</summary>
public sealed record FuzzTarget(string Name, string Input, Action<byte[]> Run);

/// <summary>
/// The fuzz targets (fuzz/README.md). Each catches exactly the exceptions its decoder documents
/// for bad input; anything else escapes and is a finding: afl-fuzz records the input as a crash.
/// </summary>
public static class Targets
{
    private static ClusterKey? _key;

    /// <summary>
    /// The cluster key of every fuzz run (a peer without it can still send all of these bytes).
    /// Made on first use: instrumented code (ClusterKey's constructor) must not run before
    /// Fuzzer.Run has mapped the coverage memory, or its first branch writes through a null pointer.
    /// </summary>
    public static ClusterKey Key => _key ??= new ClusterKey("ferry-fuzz-cluster-key-0123456789"u8);

    public static readonly FuzzTarget[] All =
    [
        new("frames", "a byte stream of frames, as a peer sends them after the handshake", Frames),
        new("control-json", "byte 0 picks the message (mod 9: Offer, OfferAccepted, DeviceState, SwitchoverReady, Resumed, Abort, PostCopyComplete, PostCopyResume, PageChannel); the rest is its JSON payload", ControlJsonMessage),
        new("page-batch", "u32 guest pages, then a PageBatch payload", PageBatch),
        new("binary", "byte 0 picks the payload (mod 6: RoundEnd, VcpuState, Switchover, PageRequest, PostCopyEnd, PendingPages); u32 a (guest pages, or vCPUs for VcpuState); u32 b (PendingPages: the expected first word); then the payload", BinaryMessage),
        new("handshake", "what the peer sends during the key handshake: both the server side and the client side read it", Handshake),
        ApiSignatureTarget.Target,
    ];

    public static FuzzTarget? Find(string name) => Array.Find(All, t => t.Name == name);

    /// <summary>
    /// The frame reader over the input as it is (checks 1–4 of docs/protocol.md §2: mostly checksum
    /// mismatches), then over a copy whose checksums are made to match, delivered in small pieces,
    /// so the later checks and every payload decoder are reached too.
    /// </summary>
    public static void Frames(byte[] input)
    {
        ReadFrames(input, new MemoryStream(input, writable: false));
        byte[] sealedCopy = SealChecksums(input);
        ReadFrames(sealedCopy, new ScriptedStream(sealedCopy, ScriptedStream.Trickle));
    }

    private static void ReadFrames(byte[] wire, Stream stream)
    {
        var reader = new FrameReader(stream);
        var ctx = DecodeContext.Default();
        try
        {
            while (true)
            {
                long start = reader.BytesRead;
                Frame f = reader.Read();
                CheckDelivered(wire, start, reader.BytesRead, f);
                try
                {
                    MessageDecoders.Decode(f.Type, f.Payload, ctx);
                }
                catch (ProtocolException)
                {
                }
            }
        }
        catch (ProtocolException)
        {
        }
    }

    /// <summary>A delivered frame is exactly the bytes it came from, and every header rule held for them.</summary>
    private static void CheckDelivered(byte[] wire, long start, long end, Frame f)
    {
        if (start < 0 || end > wire.Length || end - start != FrameHeader.Size + f.Payload.Length)
        {
            throw new FuzzFinding($"frame {f.Sequence} delivered {f.Payload.Length} payload bytes for bytes {start}..{end} of {wire.Length}");
        }
        ReadOnlySpan<byte> raw = wire.AsSpan((int)start, (int)(end - start));
        bool ok = raw[8] == (byte)f.Type && Enum.IsDefined(f.Type)
            && raw[9] == 0
            && BinaryPrimitives.ReadUInt16LittleEndian(raw[10..]) == 0
            && BinaryPrimitives.ReadUInt32LittleEndian(raw[12..]) == (uint)f.Payload.Length
            && f.Payload.Length <= FrameHeader.MaxPayload
            && BinaryPrimitives.ReadUInt64LittleEndian(raw[16..]) == f.Sequence
            && BinaryPrimitives.ReadUInt64LittleEndian(raw) == XxHash3.HashToUInt64(raw[8..])
            && raw[FrameHeader.Size..].SequenceEqual(f.Payload);
        if (!ok)
        {
            throw new FuzzFinding($"frame {f.Sequence} ({f.Type}) was delivered although its bytes break a header rule");
        }
    }

    /// <summary>Rewrites each complete frame's checksum so it matches; stops at the first frame that is too large or cut short.</summary>
    public static byte[] SealChecksums(byte[] input)
    {
        byte[] b = (byte[])input.Clone();
        int pos = 0;
        while (b.Length - pos >= FrameHeader.Size)
        {
            uint length = FrameHeader.ReadLength(b.AsSpan(pos));
            if (length > FrameHeader.MaxPayload || b.Length - pos - FrameHeader.Size < length)
            {
                break;
            }
            int total = FrameHeader.Size + (int)length;
            BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(pos), XxHash3.HashToUInt64(b.AsSpan(pos + 8, total - 8)));
            pos += total;
        }
        return b;
    }

    public static void ControlJsonMessage(byte[] input)
    {
        if (input.Length == 0)
        {
            return;
        }
        FrameType type = MessageDecoders.JsonTypes[input[0] % MessageDecoders.JsonTypes.Length];
        try
        {
            MessageDecoders.Decode(type, input.AsSpan(1), DecodeContext.Default());
        }
        catch (ProtocolException)
        {
        }
    }

    public static void PageBatch(byte[] input)
    {
        if (input.Length < 4)
        {
            return;
        }
        long guestPages = BinaryPrimitives.ReadUInt32LittleEndian(input);
        try
        {
            MessageDecoders.PageBatch(input.AsSpan(4), guestPages);
        }
        catch (ProtocolException)
        {
        }
    }

    public static void BinaryMessage(byte[] input)
    {
        if (input.Length < 9)
        {
            return;
        }
        FrameType type = MessageDecoders.BinaryTypes[input[0] % MessageDecoders.BinaryTypes.Length];
        uint a = BinaryPrimitives.ReadUInt32LittleEndian(input.AsSpan(1));
        uint b = BinaryPrimitives.ReadUInt32LittleEndian(input.AsSpan(5));
        var sizing = new DecodeContext(guestPages: a, vcpus: (int)Math.Min(a, int.MaxValue));
        // The engine's expected first word only ever walks from 0 to the bitmap's end.
        var ctx = new DecodeContext(a, sizing.Vcpus, (int)(b % ((uint)sizing.TotalWords + 1)));
        try
        {
            MessageDecoders.Decode(type, input.AsSpan(9), ctx);
        }
        catch (ProtocolException)
        {
        }
    }

    /// <summary>
    /// The destination's side of the key handshake reading the input as the source's bytes (whole,
    /// then trickled), and the source's side reading it as the destination's. A peer without the
    /// key cannot get past the proof, so every run ends in a <see cref="ProtocolException"/>.
    /// </summary>
    public static void Handshake(byte[] input)
    {
        foreach (bool trickle in (ReadOnlySpan<bool>)[false, true])
        {
            ExpectRefusal(() => MigrationHandshake.RunServer(new ScriptedStream(input, trickle ? ScriptedStream.Trickle : null), Key), "server");
            ExpectRefusal(() => MigrationHandshake.RunClient(new ScriptedStream(input, trickle ? ScriptedStream.Trickle : null), Key), "client");
        }
    }

    private static void ExpectRefusal(Action handshake, string side)
    {
        try
        {
            handshake();
        }
        catch (ProtocolException)
        {
            return;
        }
        throw new FuzzFinding($"the {side} side of the handshake accepted a peer that does not hold the key");
    }
}
