using Ferry.Agent.Migrations;
using Ferry.Core.Progress;
using Ferry.Core.Reporting;

namespace Ferry.Agent.Api;

public sealed record AgentInfo
{
    public string AgentId { get; init; } = "";
    public string HostName { get; init; } = "";
    public string Os { get; init; } = "";
    public int ProcessorCount { get; init; }
    public string ApiEndpoint { get; init; } = "";
    public string MigrationEndpoint { get; init; } = "";
    public int ProtocolVersion { get; init; }
    public int VmCount { get; init; }
}

public sealed record CreateVmRequest
{
    public string? Id { get; init; }
    public string? Name { get; init; }

    /// <summary>"1GiB", "512MiB" or bytes.</summary>
    public string Memory { get; init; } = "1GiB";
    public int Vcpus { get; init; } = 1;
    public string Workload { get; init; } = "idle";

    /// <summary>none | zero | text | random | mix.</summary>
    public string Fill { get; init; } = "none";
    public long? OpsLimitPerVcpu { get; init; }
}

public sealed record VmView
{
    public string Id { get; init; } = "";
    public string Name { get; init; } = "";
    public long MemoryBytes { get; init; }
    public int Vcpus { get; init; }
    public string Workload { get; init; } = "";
    public string State { get; init; } = "";
    public bool Migrating { get; init; }
    public ulong Ops { get; init; }
    public double OpsPerSecond { get; init; }
    public long PopulatedPages { get; init; }
    public string? Note { get; init; }
}

public sealed record StartMigrationRequest
{
    public string VmId { get; init; } = "";

    /// <summary>The destination agent's API base URL, e.g. http://127.0.0.1:7101.</summary>
    public string Target { get; init; } = "";
    public string Technique { get; init; } = "precopy";

    /// <summary>auto | kernel | software; null = the agent's default (--dirty-log).</summary>
    public string? DirtyLog { get; init; }

    /// <summary>"125MB/s", "1Gbit/s"; "0" or null = unlimited.</summary>
    public string? MaxBandwidth { get; init; }
    public string? DowntimeLimit { get; init; }
    public int? MaxRounds { get; init; }
    public long? DirtyPageThreshold { get; init; }
    public double? MaxRamMultiple { get; init; }
    public string? Timeout { get; init; }

    /// <summary>Hybrid: pre-copy rounds before post-copy; null = 1.</summary>
    public int? HybridRounds { get; init; }

    /// <summary>Post-copy: how long the source retries on its own after the link broke, e.g. "30s" (the default).</summary>
    public string? PostCopyRetryWindow { get; init; }

    /// <summary>Post-copy: how long a paused post-copy is kept, all pauses together, e.g. "10min" (the default).</summary>
    public string? PostCopyPauseLimit { get; init; }

    /// <summary>Page connections besides the control connection (0 to 8); null = 2.</summary>
    public int? PageConnections { get; init; }

    /// <summary>Fail when nothing moves for this long (e.g. "10s"); default: the source agent's --stall-timeout.</summary>
    public string? StallTimeout { get; init; }

    /// <summary>"ADDRESS:PORT" to connect to instead of the migration endpoint the target reports (a tunnel or proxy in between); null = as reported.</summary>
    public string? MigrationEndpoint { get; init; }
}

public sealed record MigrationView
{
    public string Id { get; init; } = "";
    public string VmId { get; init; } = "";
    public string Target { get; init; } = "";
    public OutgoingState State { get; init; }
    public MigrationProgress? Progress { get; init; }
    public string? Error { get; init; }
    public MigrationReport? Report { get; init; }
}

public sealed record IncomingView
{
    public string RemoteEndpoint { get; init; } = "";
    public string? MigrationId { get; init; }
    public string? VmId { get; init; }
    public IncomingState State { get; init; }
    public long PagesReceived { get; init; }
    public string? Error { get; init; }
}

public sealed record ErrorBody(string Error);
