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

    /// <summary>
    /// <c>--memory-budget</c>: guest memory this agent holds in all — VMs created here and incoming
    /// migrations from their offer on. A create or an offer that does not fit is refused (the
    /// source keeps its VM). Without it an agent on a 23 GiB host accepted 12 × 64 GiB VMs.
    /// </summary>
    public long MemoryBudgetBytes { get; init; } = DefaultMemoryBudget();

    /// <summary>
    /// <c>--stall-timeout</c>: migrations this agent sends fail when nothing moves for this long
    /// (unless the request sets its own), and a migration arriving here whose source sends nothing
    /// for this long is discarded (before its switchover; after it, post-copy recovery's rules apply).
    /// </summary>
    public TimeSpan StallTimeout { get; init; } = Core.Migration.MigrationOptions.DefaultStallTimeout;

    /// <summary><c>--shutdown-timeout</c>: on SIGTERM, how long migrations in progress (in and out) get to finish before they are cancelled.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = DefaultShutdownTimeout;

    public static readonly TimeSpan DefaultShutdownTimeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Host names (besides this host's own addresses, its name and localhost) by which clients reach
    /// the API: a signed request names the agent it is for, and is refused by any other.
    /// </summary>
    public IReadOnlyList<string> ApiNames { get; init; } = [];

    /// <summary>Physical memory (or the cgroup's limit) minus a reserve for the host: a tenth, at least 1 GiB.</summary>
    public static long DefaultMemoryBudget()
    {
        long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long reserve = Math.Max(1L << 30, total / 10);
        return Math.Max(0, total - reserve);
    }

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
