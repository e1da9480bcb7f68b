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
}
