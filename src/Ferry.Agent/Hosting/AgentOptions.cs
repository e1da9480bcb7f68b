using System.Net;
using Ferry.Protocol.Handshake;

namespace Ferry.Agent.Hosting;

/// <summary>How an agent runs. Validated by <see cref="Parse"/>; defaults are named constants.</summary>
public sealed record AgentOptions
{
    public const long DefaultMaxVmMemory = 64L << 30;

    public required IPEndPoint ApiEndpoint { get; init; }

    /// <summary>Where migrations arrive; port 0 = any free port (reported by /v1/info).</summary>
    public required IPEndPoint MigrationEndpoint { get; init; }

    public required ClusterKey Key { get; init; }

    /// <summary>TLS for migration connections, both ways (null: plain TCP).</summary>
    public Transport.TlsOptions? Tls { get; init; }

    /// <summary>How this agent's migration connections are opened and checked (Ferry.Transport).</summary>
    public Transport.TransportOptions Transport => new() { Key = Key, Tls = Tls };

    public long MaxVmMemoryBytes { get; init; } = DefaultMaxVmMemory;

    /// <summary>How incoming pages are installed.</summary>
    public Core.Migration.PageInstallChoice PageInstall { get; init; } = Core.Migration.PageInstallChoice.Auto;

    /// <summary>Dirty log for outgoing migrations that do not ask for one.</summary>
    public Core.Tracking.DirtyLogChoice DefaultDirtyLog { get; init; } = Core.Tracking.DirtyLogChoice.Auto;

    /// <summary>
    /// Post-copy into this agent: how long a VM whose link to the source broke waits for the source
    /// to come back before it is stopped and discarded. Matches the source's default pause limit.
    /// </summary>
    public TimeSpan PostCopyPauseLimit { get; init; } = Core.Migration.MigrationOptions.DefaultPostCopyPauseLimit;

    public static IPEndPoint ParseEndpoint(string text, string what)
    {
        if (!IPEndPoint.TryParse(text, out var ep) || text.IndexOf(':') < 0)
        {
            throw new ArgumentException($"{what} '{text}' is not ADDRESS:PORT (example: 127.0.0.1:7100)");
        }
        return ep;
    }
}
