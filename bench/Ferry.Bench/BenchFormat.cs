using System.Globalization;

namespace Ferry.Bench;

/// <summary>How every verb prints: timestamped progress on stderr, and invariant-culture figures ("n/a" for a figure not measured).</summary>
internal static class BenchFormat
{
    public static void Progress(string message) =>
        Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");

    public static string Mib(long bytes) => (bytes / 1048576.0).ToString("0", CultureInfo.InvariantCulture);

    public static string Gbs(double bytesPerSecond) => double.IsNaN(bytesPerSecond) ? "n/a" : (bytesPerSecond / 1e9).ToString("0.000", CultureInfo.InvariantCulture);

    public static string P(double share) => double.IsNaN(share) ? "n/a" : (share * 100).ToString("0", CultureInfo.InvariantCulture) + "%";

    public static string F(double v) => double.IsNaN(v) ? "n/a" : v.ToString("0.00", CultureInfo.InvariantCulture);
}
