namespace Ferry.Core.Policy;

/// <summary>
/// Stop conditions of pre-copy, each optional. Defaults follow the issue and QEMU's habits:
/// downtime limit 300 ms, no round cap, 30 × RAM cap, one hour timeout.
/// </summary>
public sealed record PreCopyOptions
{
    public static readonly TimeSpan DefaultDowntimeLimit = TimeSpan.FromMilliseconds(300);
    public const double DefaultMaxRamMultiple = 30;
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromHours(1);

    /// <summary>Stop and copy when remaining bytes ≤ measured bandwidth × this. Null disables.</summary>
    public TimeSpan? DowntimeLimit { get; init; } = DefaultDowntimeLimit;

    /// <summary>Stop and copy after this many live rounds. Null = no cap.</summary>
    public int? MaxRounds { get; init; }

    /// <summary>Stop and copy once fewer than this many pages were dirtied in a round. Null disables.</summary>
    public long? DirtyPageThreshold { get; init; }

    /// <summary>Stop and copy once bytes sent exceed this multiple of RAM. Null disables.</summary>
    public double? MaxRamMultiple { get; init; } = DefaultMaxRamMultiple;

    /// <summary>Abort when the migration has run this long without stopping. Null disables.</summary>
    public TimeSpan? Timeout { get; init; } = DefaultTimeout;

    public void Validate()
    {
        if (DowntimeLimit is { } d && d < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(DowntimeLimit), "downtime limit must not be negative");
        }
        if (MaxRounds is { } r && r < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRounds), "round cap must be at least 1");
        }
        if (DirtyPageThreshold is { } t && t < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(DirtyPageThreshold), "dirty page threshold must not be negative");
        }
        if (MaxRamMultiple is { } m && m <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRamMultiple), "RAM multiple must be positive");
        }
        if (Timeout is { } to && to <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(Timeout), "timeout must be positive");
        }
    }
}
