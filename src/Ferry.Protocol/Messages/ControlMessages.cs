using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ferry.Protocol.Messages;

// Members are `set`, not `init`, on purpose: the source-generated reader sets init-only members the
// way a constructor takes arguments, so a member a peer leaves out arrived as null instead of its
// `= ""` (found by fuzzing: `{}` decoded as an Abort with a null Reason, which could not even be
// encoded again). With setters a missing member keeps its initializer, which is what lets a later
// version add one (docs/protocol.md §3.1).

/// <summary>Source → destination, first frame: the VM to receive and how it will come.</summary>
public sealed record Offer
{
    public string MigrationId { get; set; } = "";
    public string VmId { get; set; } = "";
    public string VmName { get; set; } = "";
    public long MemoryBytes { get; set; }
    public int Vcpus { get; set; }
    public string Workload { get; set; } = "";
    public long? OpsLimitPerVcpu { get; set; }
    public string Technique { get; set; } = "";
    public string SourceHost { get; set; } = "";
    public int VcpuStateBytes { get; set; }

    /// <summary>Page connections the source would like besides this one (0: every frame on this connection). Omitted when 0, so v1 peers see the same bytes.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int PageConnections { get; set; }
}

/// <summary>Destination → source: guest RAM is reserved; send pages.</summary>
public sealed record OfferAccepted
{
    public string DestinationHost { get; set; } = "";
    public string Os { get; set; } = "";
    public int ProcessorCount { get; set; }

    /// <summary>How the destination installs pages: "uffd" or "copy".</summary>
    public string PageInstall { get; set; } = "";

    public string PageInstallReason { get; set; } = "";

    /// <summary>Page connections the destination takes (at most what was offered; 0: every frame on the control connection). Omitted when 0.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int PageConnections { get; set; }
}

/// <summary>Device state at switchover: the virtual NIC's address and the throttle in force.</summary>
public sealed record DeviceState
{
    public string NicAddress { get; set; } = "";
    public int ThrottlePercent { get; set; }
}

/// <summary>Destination → source after checking the switchover digest.</summary>
public sealed record SwitchoverReady
{
    public bool DigestMatches { get; set; }
    public string DestinationDigest { get; set; } = "";
    public double DestinationHashMs { get; set; }
    public string? Problem { get; set; }
}

/// <summary>Destination → source: the VM runs at the destination.</summary>
public sealed record Resumed
{
    /// <summary>Switchover frame received → VM running, measured at the destination.</summary>
    public double ResumeMs { get; set; }
}

/// <summary>Either side: the migration ends, with the reason.</summary>
public sealed record Abort
{
    public string Reason { get; set; } = "";
}

/// <summary>Destination → source once post-copy is over: verdict on the pages and what the guest felt.</summary>
public sealed record PostCopyComplete
{
    /// <summary>True when every page arrived and the digest of the received pages equals the source's.</summary>
    public bool DigestMatches { get; set; }
    public string DestinationDigest { get; set; } = "";
    public string? Problem { get; set; }

    /// <summary>Times a vCPU waited for a page that had not arrived.</summary>
    public long Faults { get; set; }
    public double FaultLatencyP50Ms { get; set; }
    public double FaultLatencyP99Ms { get; set; }
    public double FaultLatencyMaxMs { get; set; }

    /// <summary>VM running at the destination → last pending page installed.</summary>
    public double ResumeMs { get; set; }

    /// <summary>Pages that arrived after switchover although already present (sent twice); 0 when nothing was re-sent needlessly.</summary>
    public long DuplicatePages { get; set; }

    /// <summary>How guest accesses to missing pages were caught: userfaultfd (kernel) or software, with why.</summary>
    public string FaultPath { get; set; } = "";

    /// <summary>Kernel path: faults on never-written pages, zero-filled at the destination without asking the source.</summary>
    public long ZeroFilledOnFault { get; set; }

    /// <summary>Guest operations over <see cref="ResumeMs"/>; null when not measured (no last page, or a destination that does not count).</summary>
    public long? ResumeOps { get; set; }

    /// <summary>Guest operations from the VM running here to PostCopyEnd received; null when not measured.</summary>
    public long? RunOps { get; set; }

    /// <summary>VM running here → PostCopyEnd received, on this side's clock (a duration: clocks are never compared across hosts).</summary>
    public double? RunMs { get; set; }
}

/// <summary>Source → destination on a new connection: resume the post-copy of this migration after its link broke.</summary>
public sealed record PostCopyResume
{
    public string MigrationId { get; set; } = "";
}

/// <summary>Source → destination, first frame of a page connection (§4.3).</summary>
public sealed record PageChannelHello
{
    public string MigrationId { get; set; } = "";

    /// <summary>0 … pageConnections − 1.</summary>
    public int Channel { get; set; }

    /// <summary>0 for the first set; one more after each post-copy recovery, so a connection of an earlier set is refused.</summary>
    public int Generation { get; set; }
}

// RespectNullableAnnotations: a peer's null in a member declared non-nullable (e.g. "workload": null)
// is malformed input, rejected here rather than left to surface as a NullReferenceException later.
// FiniteDoubleConverter: a number beyond double's range is refused too, not read as infinity.
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = false, RespectNullableAnnotations = true,
    Converters = [typeof(FiniteDoubleConverter)])]
[JsonSerializable(typeof(Offer))]
[JsonSerializable(typeof(OfferAccepted))]
[JsonSerializable(typeof(DeviceState))]
[JsonSerializable(typeof(SwitchoverReady))]
[JsonSerializable(typeof(Resumed))]
[JsonSerializable(typeof(Abort))]
[JsonSerializable(typeof(PostCopyComplete))]
[JsonSerializable(typeof(PostCopyResume))]
[JsonSerializable(typeof(PageChannelHello))]
public sealed partial class ControlJson : JsonSerializerContext
{
    /// <summary>Serialises a control message as compact UTF-8 JSON (its frame payload).</summary>
    public static byte[] Encode<T>(T message) =>
        JsonSerializer.SerializeToUtf8Bytes(message, (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)Default.GetTypeInfo(typeof(T))!);

    /// <summary>Parses a control message; malformed JSON is a protocol error, not a crash.</summary>
    public static T Decode<T>(ReadOnlySpan<byte> payload, string what)
    {
        try
        {
            return JsonSerializer.Deserialize(payload, (System.Text.Json.Serialization.Metadata.JsonTypeInfo<T>)Default.GetTypeInfo(typeof(T))!)
                ?? throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"{what} message is null");
        }
        catch (JsonException ex)
        {
            throw new ProtocolException(ProtocolErrorKind.MalformedFrame, $"{what} message is not valid JSON: {ex.Message}", ex);
        }
    }
}
