using Ferry.Protocol.Messages;

namespace Ferry.Tests.Protocol;

/// <summary>
/// The sample values behind the golden frames (<see cref="GoldenFrameTests"/>): one copy, shared
/// with the fuzz seeds (fuzz/Ferry.Fuzz compiles this file in), so the seed frames are the golden bytes.
/// </summary>
internal static class SampleMessages
{
    public static readonly Offer Offer = new()
    {
        MigrationId = "m-1",
        VmId = "vm-7",
        VmName = "web",
        MemoryBytes = 1 << 20,
        Vcpus = 2,
        Workload = "idle",
        Technique = "precopy",
        SourceHost = "src",
        VcpuStateBytes = 160,
    };

    public static readonly OfferAccepted Accepted = new() { DestinationHost = "dst", Os = "Linux", ProcessorCount = 2, PageInstall = "uffd", PageInstallReason = "uffd: test" };

    public static readonly DeviceState Device = new() { NicAddress = "vnic:vm-7", ThrottlePercent = 0 };

    public static readonly SwitchoverReady Ready = new() { DigestMatches = true, DestinationDigest = "0123456789abcdef", DestinationHashMs = 1.5 };

    public static readonly Resumed Resumed = new() { ResumeMs = 12.25 };

    public static readonly Abort Abort = new() { Reason = "operator cancelled" };

    /// <summary>Page 5's content in the sample batch: byte i is (i * 7 + 1) mod 256.</summary>
    public static byte[] Page()
    {
        byte[] page = new byte[PageBatchCodec.PageBytes];
        for (int i = 0; i < page.Length; i++)
        {
            page[i] = (byte)(i * 7 + 1);
        }
        return page;
    }

    /// <summary>Two entries: page 5 raw, page 0x123456 zero; round 1.</summary>
    public static byte[] BatchPayload()
    {
        byte[] p = new byte[PageBatchCodec.HeaderSize + 2 * PageBatchCodec.EntryHeaderSize + PageBatchCodec.PageBytes];
        PageBatchCodec.WriteHeader(p, count: 2, round: 1);
        int pos = PageBatchCodec.HeaderSize;
        PageBatchCodec.WriteEntryHeader(p.AsSpan(pos), 5, PageEncoding.Raw);
        pos += PageBatchCodec.EntryHeaderSize;
        Page().CopyTo(p, pos);
        pos += PageBatchCodec.PageBytes;
        PageBatchCodec.WriteEntryHeader(p.AsSpan(pos), 0x123456, PageEncoding.Zero);
        return p;
    }
}
