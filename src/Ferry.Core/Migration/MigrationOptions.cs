using Ferry.Core.Policy;

namespace Ferry.Core.Migration;

/// <summary>How one migration runs. Validated on construction of the session that uses it.</summary>
public sealed record MigrationOptions
{
    public static readonly TimeSpan DefaultBaselineWindow = TimeSpan.FromSeconds(3);

    public static readonly TimeSpan DefaultPostCopyPauseLimit = TimeSpan.FromMinutes(10);

    public MigrationTechnique Technique { get; init; } = MigrationTechnique.PreCopy;

    /// <summary>Which dirty log tracks the guest during live rounds.</summary>
    public Tracking.DirtyLogChoice DirtyLog { get; init; } = Tracking.DirtyLogChoice.Auto;

    public PreCopyOptions PreCopy { get; init; } = new();

    /// <summary>Sender-side limit in bytes/s; 0 = unlimited.</summary>
    public long MaxBandwidthBytesPerSecond { get; init; }

    /// <summary>Throughput before the migration is measured over this window for the degradation figure.</summary>
    public TimeSpan BaselineWindow { get; init; } = DefaultBaselineWindow;

    /// <summary>Hybrid: pre-copy rounds before the switch to post-copy.</summary>
    public int HybridRounds { get; init; } = HybridPolicy.DefaultRounds;

    /// <summary>Auto: rounds in a row without the remaining bytes shrinking before switching to post-copy.</summary>
    public int AutoStallRounds { get; init; } = AutoPolicy.DefaultStallRounds;

    /// <summary>Post-copy: how long the source waits for the destination's confirmation that every page arrived, after the last one was sent.</summary>
    public TimeSpan PostCopyCompletionTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Post-copy: how long the source keeps trying, on its own, to reach the destination again after
    /// the link broke (when it can reconnect at all), with <see cref="ReconnectBackoff"/> between
    /// attempts. Once spent, post-copy stays paused until a resume request starts another such
    /// window, a cancel abandons it, or <see cref="PostCopyPauseLimit"/> passes.
    /// </summary>
    public TimeSpan PostCopyRecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Post-copy: the longest the source keeps a paused post-copy (from the moment its link broke)
    /// before it gives up. Generous by default so an operator has time to repair the link; a
    /// destination agent waits as long (its own pause limit) before it stops the VM.
    /// </summary>
    public TimeSpan PostCopyPauseLimit { get; init; } = DefaultPostCopyPauseLimit;

    /// <summary>Most page connections a migration may use besides its control connection.</summary>
    public const int MaxPageConnections = 8;

    /// <summary>
    /// Page connections besides the control connection (<c>--connections</c>): page batches are
    /// spread over them, while offers, state, verdicts and post-copy's page requests and answers
    /// keep the control connection to themselves (so a fault never queues behind pushed pages).
    /// 0 = everything on the one connection. A driver that cannot open more connections uses 0.
    /// </summary>
    public int PageConnections { get; init; } = 2;

    public static readonly TimeSpan DefaultStallTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// <c>--stall-timeout</c>: a migration in which nothing moves for this long — no byte taken by
    /// the link, no answer, no step done — fails, and before the commit point the source VM runs on.
    /// The driver gives every write the same limit, so a frozen destination cannot hold a write.
    /// </summary>
    public TimeSpan StallTimeout { get; init; } = DefaultStallTimeout;

    /// <summary>How long to wait for the destination at switchover before giving up.</summary>
    public TimeSpan SwitchoverTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The policy that decides after each live round for this technique (a fresh instance: some policies keep state).</summary>
    public IMigrationPolicy CreatePolicy() => Technique switch
    {
        MigrationTechnique.Hybrid => new HybridPolicy(HybridRounds, PreCopy.Timeout),
        MigrationTechnique.Auto => new AutoPolicy(PreCopy, AutoStallRounds),
        _ => new PreCopyPolicy(PreCopy),
    };

    public void Validate()
    {
        PreCopy.Validate();
        if (HybridRounds < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(HybridRounds), "hybrid needs at least one pre-copy round");
        }
        if (AutoStallRounds < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(AutoStallRounds), "auto stall rounds must be at least 1");
        }
        if (PostCopyRecoveryTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(PostCopyRecoveryTimeout), "post-copy recovery timeout must be positive");
        }
        if (PostCopyPauseLimit < PostCopyRecoveryTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(PostCopyPauseLimit), "post-copy pause limit must not be shorter than the automatic recovery window");
        }
        if (PostCopyCompletionTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(PostCopyCompletionTimeout), "post-copy completion timeout must be positive");
        }
        if (StallTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(StallTimeout), "stall timeout must be positive");
        }
        if (PageConnections is < 0 or > MaxPageConnections)
        {
            throw new ArgumentOutOfRangeException(nameof(PageConnections), $"page connections must be 0 to {MaxPageConnections}");
        }
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
