using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Vm.Cpu;

namespace Ferry.Fuzz;

/// <summary>
/// What a receiver knows when a payload arrives: the guest's size and vCPU count (from the offer)
/// and how far the pending-pages map has come. The decoders take these as arguments.
/// </summary>
public sealed class DecodeContext
{
    public DecodeContext(long guestPages, int vcpus, int pendingFirstWord = 0)
    {
        GuestPages = guestPages;
        Vcpus = vcpus;
        PendingFirstWord = pendingFirstWord;
    }

    /// <summary>An 8 GiB guest with 2 vCPUs (the golden page batch names page 0x123456).</summary>
    public static DecodeContext Default() => new(guestPages: 1 << 21, vcpus: 2);

    public long GuestPages { get; }

    public int Vcpus { get; }

    /// <summary>Words of the pending bitmap, as the engine sizes it: ⌈pages / 64⌉.</summary>
    public int TotalWords => (int)Math.Min((GuestPages + 63) / 64, int.MaxValue);

    /// <summary>The word the next PendingPages chunk must start at.</summary>
    public int PendingFirstWord { get; set; }
}

/// <summary>
/// Every payload decoder of protocol v1, called the way the engine calls it (docs/protocol.md §3).
/// A decoder may refuse its input only with <see cref="Ferry.Protocol.ProtocolException"/>; the
/// callers decide what else is allowed to escape (nothing).
/// </summary>
public static class MessageDecoders
{
    /// <summary>The JSON control messages, in the order the control-json target's selector byte picks them.</summary>
    public static readonly FrameType[] JsonTypes =
    [
        FrameType.Offer,
        FrameType.OfferAccepted,
        FrameType.DeviceState,
        FrameType.SwitchoverReady,
        FrameType.Resumed,
        FrameType.Abort,
        FrameType.PostCopyComplete,
        FrameType.PostCopyResume,
        FrameType.PageChannel,
    ];

    /// <summary>The fixed-layout binary payloads, in the order the binary target's selector byte picks them.</summary>
    public static readonly FrameType[] BinaryTypes =
    [
        FrameType.RoundEnd,
        FrameType.VcpuState,
        FrameType.Switchover,
        FrameType.PageRequest,
        FrameType.PostCopyEnd,
        FrameType.PendingPages,
    ];

    /// <summary>Decodes one payload as a frame of <paramref name="type"/> would be decoded by its receiver.</summary>
    public static void Decode(FrameType type, ReadOnlySpan<byte> payload, DecodeContext ctx)
    {
        switch (type)
        {
            case FrameType.Offer: RoundTrip<Offer>(payload, "offer"); break;
            case FrameType.OfferAccepted: RoundTrip<OfferAccepted>(payload, "offer accepted"); break;
            case FrameType.DeviceState: RoundTrip<DeviceState>(payload, "device state"); break;
            case FrameType.SwitchoverReady: RoundTrip<SwitchoverReady>(payload, "switchover ready"); break;
            case FrameType.Resumed: RoundTrip<Resumed>(payload, "resumed"); break;
            case FrameType.Abort: RoundTrip<Abort>(payload, "abort"); break;
            case FrameType.PostCopyComplete: RoundTrip<PostCopyComplete>(payload, "post-copy complete"); break;
            case FrameType.PostCopyResume: RoundTrip<PostCopyResume>(payload, "post-copy resume"); break;
            case FrameType.PageChannel: RoundTrip<PageChannelHello>(payload, "page channel"); break;
            case FrameType.PageBatch: PageBatch(payload, ctx.GuestPages); break;
            case FrameType.RoundEnd:
            case FrameType.RoundAck:
                RoundEnd.Read(payload);
                break;
            case FrameType.VcpuState:
                VcpuStateMessage.Read(payload, VcpuState.SizeInBytes, ctx.Vcpus, out ReadOnlySpan<byte> regs);
                VcpuState.Read(regs);
                break;
            case FrameType.Switchover: Switchover.Read(payload); break;
            case FrameType.PageRequest: PageRequest.Read(payload, ctx.GuestPages); break;
            case FrameType.PostCopyEnd: PostCopyEnd.Read(payload); break;
            case FrameType.PendingPages: PendingPages(payload, ctx); break;
            case FrameType.Commit: break;
            default: throw new FuzzFinding($"no decoder for frame type {(byte)type}");
        }
    }

    /// <summary>
    /// Decodes a control message; a message that decodes must also encode, and decode back to an
    /// equal message (a peer's text ends up in reports and the API, which serialise it again).
    /// </summary>
    public static T RoundTrip<T>(ReadOnlySpan<byte> payload, string what)
        where T : class
    {
        T message = ControlJson.Decode<T>(payload, what);
        byte[] again;
        try
        {
            again = ControlJson.Encode(message);
        }
        catch (Exception ex)
        {
            throw new FuzzFinding($"{what} decoded into {message}, which cannot be encoded again: {ex.Message}", ex);
        }
        T back = ControlJson.Decode<T>(again, what);
        if (!message.Equals(back))
        {
            throw new FuzzFinding($"{what} does not survive a round trip: {message} became {back}");
        }
        return message;
    }

    /// <summary>Validate, then walk the entries as the installer does, checking they are what Validate promised.</summary>
    public static void PageBatch(ReadOnlySpan<byte> payload, long guestPages)
    {
        int count = PageBatchCodec.Validate(payload, guestPages, out int round);
        if (count is < 0 or > PageBatchCodec.MaxPagesPerBatch || round < 0)
        {
            throw new FuzzFinding($"page batch validated with count {count}, round {round}");
        }
        int seen = 0;
        foreach (PageBatchCodec.PageEntry e in PageBatchCodec.Entries(payload))
        {
            if (e.Page < 0 || e.Page >= guestPages)
            {
                throw new FuzzFinding($"validated page batch yields page {e.Page} of {guestPages}");
            }
            int expected = e.Encoding switch
            {
                PageEncoding.Raw => PageBatchCodec.PageBytes,
                PageEncoding.Zero => 0,
                _ => throw new FuzzFinding($"validated page batch yields encoding {(byte)e.Encoding}"),
            };
            if (e.Data.Length != expected)
            {
                throw new FuzzFinding($"validated page batch yields {e.Data.Length} bytes for a {e.Encoding} page");
            }
            seen++;
        }
        if (seen != count)
        {
            throw new FuzzFinding($"page batch validated as {count} pages, enumerates {seen}");
        }
    }

    /// <summary>One chunk of the pending map, with the word buffer the engine gives it.</summary>
    public static void PendingPages(ReadOnlySpan<byte> payload, DecodeContext ctx)
    {
        ulong[] words = new ulong[Math.Min(ctx.TotalWords, PendingPagesMessage.MaxWordsPerFrame)];
        int n = PendingPagesMessage.Read(payload, ctx.PendingFirstWord, ctx.TotalWords, words);
        if (n <= 0 || n > words.Length || (long)ctx.PendingFirstWord + n > ctx.TotalWords)
        {
            throw new FuzzFinding($"pending pages chunk of {n} words accepted at word {ctx.PendingFirstWord} of {ctx.TotalWords}");
        }
        ctx.PendingFirstWord += n;
    }
}
