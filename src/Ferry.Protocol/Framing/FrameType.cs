namespace Ferry.Protocol.Framing;

/// <summary>Frame types of protocol v1 (docs/protocol.md). Values are wire constants: never renumber.</summary>
public enum FrameType : byte
{
    Offer = 1,
    OfferAccepted = 2,
    PageBatch = 3,
    RoundEnd = 4,
    VcpuState = 5,
    DeviceState = 6,
    Switchover = 7,
    SwitchoverReady = 8,
    Commit = 9,
    Resumed = 10,
    Abort = 11,

    /// <summary>Destination → source: every page of a round is installed (same payload as RoundEnd).</summary>
    RoundAck = 12,

    /// <summary>Destination → source, post-copy: a vCPU waits for this page; send it before anything else.</summary>
    PageRequest = 13,

    /// <summary>Source → destination at a post-copy switchover: one chunk of the bitmap of pages still at the source. Destination → source after a post-copy resume: the pages it still lacks.</summary>
    PendingPages = 14,

    /// <summary>Source → destination: every pending page has been sent; the digest of all pages as sent.</summary>
    PostCopyEnd = 15,

    /// <summary>Destination → source: every page arrived (or not), with the digest verdict and fault figures.</summary>
    PostCopyComplete = 16,

    /// <summary>Source → destination, first frame of a new connection after a post-copy link broke: resume this migration.</summary>
    PostCopyResume = 17,

    /// <summary>Source → destination, first frame of a page connection: which migration, which page connection, which generation of them.</summary>
    PageChannel = 18,
}
