using System.Globalization;

namespace Ferry.Core.Units;

/// <summary>
/// Parses the sizes, rates and durations users type ("1GiB", "125MB/s", "300ms"). Binary
/// suffixes (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB) powers of 1000,
/// as people who read link speeds expect.
/// </summary>
public static class UnitParser
{
    private static readonly (string Suffix, double Factor)[] SizeSuffixes =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30), ("TiB", 1L << 40),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
        ("K", 1L << 10), ("M", 1L << 20), ("G", 1L << 30),
        ("B", 1),
    ];

    public static bool TryParseBytes(string text, out long bytes, out string error)
    {
        bytes = 0;
        string s = text.Trim();
        double factor = 1;
        foreach (var (suffix, f) in SizeSuffixes)
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase) && s.Length > suffix.Length)
            {
                factor = f;
                s = s[..^suffix.Length];
                break;
            }
        }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || double.IsNaN(value) || value < 0)
        {
            error = $"'{text}' is not a size (examples: 4096, 256MiB, 1GiB, 1.5GB)";
            return false;
        }
        double total = value * factor;
        if (total > long.MaxValue / 2)
        {
            error = $"'{text}' is too large";
            return false;
        }
        bytes = (long)total;
        error = "";
        return true;
    }

    public static long ParseBytes(string text) =>
        TryParseBytes(text, out long b, out string e) ? b : throw new FormatException(e);

    /// <summary>Parses a rate in bytes per second: "125MB/s", "1Gbit/s", "0" (unlimited).</summary>
    public static bool TryParseRate(string text, out long bytesPerSecond, out string error)
    {
        string s = text.Trim();
        if (s.EndsWith("/s", StringComparison.OrdinalIgnoreCase))
        {
            s = s[..^2];
        }
        double bitFactor = 1;
        foreach (var (suffix, f) in new (string, double)[] { ("Gbit", 1e9 / 8), ("Mbit", 1e6 / 8), ("Kbit", 1e3 / 8), ("bit", 1.0 / 8) })
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                bitFactor = f;
                s = s[..^suffix.Length];
                // NaN and infinities parse as doubles; they are not rates (a NaN cast to long is 0, "unlimited").
                if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v) || v < 0)
                {
                    bytesPerSecond = 0;
                    error = $"'{text}' is not a rate (examples: 125MB/s, 1Gbit/s, 0 for unlimited)";
                    return false;
                }
                if (v * bitFactor > long.MaxValue / 2)
                {
                    bytesPerSecond = 0;
                    error = $"'{text}' is too large";
                    return false;
                }
                bytesPerSecond = (long)(v * bitFactor);
                error = "";
                return true;
            }
        }
        if (TryParseBytes(s, out bytesPerSecond, out _))
        {
            error = "";
            return true;
        }
        error = $"'{text}' is not a rate (examples: 125MB/s, 1Gbit/s, 0 for unlimited)";
        return false;
    }

    public static long ParseRate(string text) =>
        TryParseRate(text, out long r, out string e) ? r : throw new FormatException(e);

    /// <summary>Parses "300ms", "2.5s", "10m", "1h", "500us"; a bare number is seconds.</summary>
    public static bool TryParseDuration(string text, out TimeSpan duration, out string error)
    {
        string s = text.Trim();
        double factorSeconds = 1;
        foreach (var (suffix, f) in new (string, double)[] { ("us", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600) })
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase) && s.Length > suffix.Length)
            {
                factorSeconds = f;
                s = s[..^suffix.Length];
                break;
            }
        }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || double.IsNaN(v) || v < 0 || v * factorSeconds > TimeSpan.MaxValue.TotalSeconds / 2)
        {
            duration = default;
            error = $"'{text}' is not a duration (examples: 300ms, 3s, 1h)";
            return false;
        }
        duration = TimeSpan.FromSeconds(v * factorSeconds);
        error = "";
        return true;
    }

    public static TimeSpan ParseDuration(string text) =>
        TryParseDuration(text, out TimeSpan d, out string e) ? d : throw new FormatException(e);

    public static string FormatBytes(double bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int u = 0;
        while (Math.Abs(bytes) >= 1024 && u < units.Length - 1)
        {
            bytes /= 1024;
            u++;
        }
        return u == 0 ? $"{bytes:0} {units[u]}" : $"{bytes:0.0} {units[u]}";
    }

    public static string FormatRate(double bytesPerSecond) => $"{bytesPerSecond / 1e6:0.0} MB/s";

    public static string FormatDuration(TimeSpan t) =>
        t.TotalSeconds >= 60 ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s"
        : t.TotalSeconds >= 1 ? $"{t.TotalSeconds:0.00} s"
        : $"{t.TotalMilliseconds:0.0} ms";
}
