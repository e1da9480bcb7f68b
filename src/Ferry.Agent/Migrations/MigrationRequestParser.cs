using Ferry.Agent.Api;
using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Tracking;
using Ferry.Core.Units;

namespace Ferry.Agent.Migrations;

/// <summary>Turns an API request into validated migration options; bad values become one-line errors.</summary>
public static class MigrationRequestParser
{
    public static bool TryParseDirtyLog(string text, out DirtyLogChoice choice)
    {
        switch (text.Trim().ToLowerInvariant())
        {
            case "auto": choice = DirtyLogChoice.Auto; return true;
            case "kernel": choice = DirtyLogChoice.Kernel; return true;
            case "software": choice = DirtyLogChoice.Software; return true;
            default: choice = default; return false;
        }
    }

    public static MigrationOptions Parse(StartMigrationRequest r, DirtyLogChoice defaultDirtyLog = DirtyLogChoice.Auto, TimeSpan? defaultStallTimeout = null)
    {
        TimeSpan stall = defaultStallTimeout ?? MigrationOptions.DefaultStallTimeout;
        if (!string.IsNullOrWhiteSpace(r.StallTimeout))
        {
            stall = UnitParser.TryParseDuration(r.StallTimeout, out var st, out string e0) ? st : throw new ArgumentException("stall timeout: " + e0);
        }
        DirtyLogChoice dirtyLog = defaultDirtyLog;
        if (r.DirtyLog is { } dl && !TryParseDirtyLog(dl, out dirtyLog))
        {
            throw new ArgumentException($"dirty log '{dl}' is not one of: auto, kernel, software");
        }
        if (!MigrationTechniqueNames.TryParse(r.Technique ?? "precopy", out var technique))
        {
            throw new ArgumentException($"technique '{r.Technique}' is not one of: {MigrationTechniqueNames.AllNames}");
        }
        long bandwidth = 0;
        if (!string.IsNullOrWhiteSpace(r.MaxBandwidth) && !UnitParser.TryParseRate(r.MaxBandwidth, out bandwidth, out string e1))
        {
            throw new ArgumentException("max bandwidth: " + e1);
        }
        var pre = new PreCopyOptions();
        if (!string.IsNullOrWhiteSpace(r.DowntimeLimit))
        {
            pre = pre with { DowntimeLimit = UnitParser.TryParseDuration(r.DowntimeLimit, out var d, out string e2) ? d : throw new ArgumentException("downtime limit: " + e2) };
        }
        if (!string.IsNullOrWhiteSpace(r.Timeout))
        {
            pre = pre with { Timeout = UnitParser.TryParseDuration(r.Timeout, out var t, out string e3) ? t : throw new ArgumentException("timeout: " + e3) };
        }
        pre = pre with
        {
            MaxRounds = r.MaxRounds,
            DirtyPageThreshold = r.DirtyPageThreshold,
            MaxRamMultiple = r.MaxRamMultiple ?? pre.MaxRamMultiple,
        };
        TimeSpan pauseLimit = MigrationOptions.DefaultPostCopyPauseLimit;
        if (!string.IsNullOrWhiteSpace(r.PostCopyPauseLimit))
        {
            pauseLimit = UnitParser.TryParseDuration(r.PostCopyPauseLimit, out var p, out string e4) ? p : throw new ArgumentException("post-copy pause limit: " + e4);
        }
        // A short pause limit alone shortens the automatic window with it, rather than being refused for undercutting the default window.
        TimeSpan retryWindow = new MigrationOptions().PostCopyRecoveryTimeout;
        retryWindow = retryWindow < pauseLimit ? retryWindow : pauseLimit;
        if (!string.IsNullOrWhiteSpace(r.PostCopyRetryWindow))
        {
            retryWindow = UnitParser.TryParseDuration(r.PostCopyRetryWindow, out var w, out string e5) ? w : throw new ArgumentException("post-copy retry window: " + e5);
        }
        var options = new MigrationOptions
        {
            Technique = technique,
            PreCopy = pre,
            MaxBandwidthBytesPerSecond = bandwidth,
            DirtyLog = dirtyLog,
            HybridRounds = r.HybridRounds ?? Core.Policy.HybridPolicy.DefaultRounds,
            PostCopyRecoveryTimeout = retryWindow,
            PostCopyPauseLimit = pauseLimit,
            PageConnections = r.PageConnections ?? new MigrationOptions().PageConnections,
            StallTimeout = stall,
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentOutOfRangeException ex)
        {
            throw new ArgumentException(ex.Message.Split(" (Parameter")[0]);
        }
        return options;
    }
}
