using Ferry.Core.Policy;

namespace Ferry.Core.Migration;

/// <summary>How one migration runs. Validated on construction of the session that uses it.</summary>
public sealed record MigrationOptions
{
    public static readonly TimeSpan DefaultBaselineWindow = TimeSpan.FromSeconds(3);

    public MigrationTechnique Technique { get; init; } = MigrationTechnique.PreCopy;

    /// <summary>Which dirty log tracks the guest during live rounds.</summary>
    public Tracking.DirtyLogChoice DirtyLog { get; init; } = Tracking.DirtyLogChoice.Auto;

    public PreCopyOptions PreCopy { get; init; } = new();

    /// <summary>Sender-side limit in bytes/s; 0 = unlimited.</summary>
    public long MaxBandwidthBytesPerSecond { get; init; }

    /// <summary>Throughput before the migration is measured over this window for the degradation figure.</summary>
    public TimeSpan BaselineWindow { get; init; } = DefaultBaselineWindow;

    /// <summary>How long to wait for the destination at switchover before giving up.</summary>
    public TimeSpan SwitchoverTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public void Validate()
    {
        PreCopy.Validate();
        if (MaxBandwidthBytesPerSecond < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBandwidthBytesPerSecond), "bandwidth limit must not be negative");
        }
        if (MaxBandwidthBytesPerSecond is > 0 and < 64 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBandwidthBytesPerSecond), "bandwidth limit below 64 KiB/s is not useful for migration");
        }
    }
}
