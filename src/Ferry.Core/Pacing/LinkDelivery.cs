namespace Ferry.Core.Pacing;

/// <summary>One reading of a connection's delivery counter: bytes the peer has acknowledged so far (on Linux, TCP's tcpi_bytes_acked).</summary>
public readonly record struct LinkDelivery(ulong BytesAcked);
