using Ferry.Core.Pacing;

namespace Ferry.Engine;

/// <summary>
/// How a source reaches its destination beyond the connection it starts with: more connections
/// (page connections, or a new one after a post-copy link break), and what a connection's link has
/// delivered. The engine does not know what a connection is; Ferry.Transport implements this over
/// TCP (and TLS), and tests implement it over loopback with faults of their choosing.
/// </summary>
public interface ISourceLinks
{
    /// <summary>False when this way to the destination cannot open more connections (then a post-copy link break is final).</summary>
    bool CanOpen { get; }

    /// <summary>A new authenticated connection to the destination's migration endpoint. Throws when the destination cannot be reached.</summary>
    Stream Open(CancellationToken ct);

    /// <summary>Bytes the peer has acknowledged on <paramref name="stream"/> (TCP's counter), or null when the transport cannot tell.</summary>
    LinkDelivery? Delivered(Stream stream);

    /// <summary>
    /// True when <paramref name="error"/> (from a write on one of these connections) is the write
    /// limit running out — the peer took nothing for the stall timeout — rather than the link
    /// breaking. The engine cannot tell a socket's errors apart; the transport can.
    /// </summary>
    bool IsStall(Exception error) => false;
}
