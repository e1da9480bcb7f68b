using Ferry.Protocol.Handshake;

namespace Ferry.Transport;

/// <summary>How migration connections are opened, secured and tuned, at both ends.</summary>
public sealed record TransportOptions
{
    /// <summary>
    /// SO_SNDBUF / SO_RCVBUF of migration sockets. Large, so a fast link is not held back by the
    /// window; the unsent cap below keeps the send side's queue short anyway.
    /// </summary>
    public const int DefaultSocketBuffer = 4 << 20;

    /// <summary>
    /// Bytes the kernel may hold for a migration socket that it has not sent yet. Without a cap the
    /// 4 MiB send buffer fills with pushed pages on a link slower than the sender, and a post-copy
    /// page answer — sent first by the source — still waits behind all of it (50 ms p50 measured on a
    /// 1 Gbit/s shaped link, bench/netns). With TCP_NOTSENT_LOWAT a write blocks instead while more
    /// than this is unsent, so the application's priority order reaches the wire.
    /// </summary>
    public const int DefaultUnsentBytesLimit = 128 << 10;

    /// <summary>The cluster key both ends prove they hold (the HMAC handshake runs inside TLS too).</summary>
    public required ClusterKey Key { get; init; }

    /// <summary>TLS for every migration connection; null = plain TCP.</summary>
    public TlsOptions? Tls { get; init; }

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a peer has to finish the TLS and key handshakes (a slow or silent one is refused).</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public int SendBufferBytes { get; init; } = DefaultSocketBuffer;

    public int ReceiveBufferBytes { get; init; } = DefaultSocketBuffer;

    public int UnsentBytesLimit { get; init; } = DefaultUnsentBytesLimit;

    /// <summary>Where connection events are logged (connects, accepts, refusals); none by default.</summary>
    public Microsoft.Extensions.Logging.ILogger Logger { get; init; } = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
}
