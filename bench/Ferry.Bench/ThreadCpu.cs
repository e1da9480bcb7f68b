using System.Globalization;

namespace Ferry.Bench;

/// <summary>
/// CPU time and page faults of the calling thread, from <c>/proc/thread-self/stat</c> (Linux).
/// Resolution is one clock tick (10 ms: USER_HZ is 100 on x86-64), fine for runs of seconds.
/// </summary>
internal readonly record struct ThreadCpu(double UserSeconds, double SystemSeconds, long MinorFaults)
{
    private const double TicksPerSecond = 100;

    public static ThreadCpu Zero => default;

    /// <summary>Reads the calling thread's counters; zeros when /proc is not available.</summary>
    public static ThreadCpu Now()
    {
        try
        {
            string stat = File.ReadAllText("/proc/thread-self/stat");
            // The command name is in parentheses and may itself hold spaces: fields start after the last ')'.
            string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // f[0] is field 3 (state): minflt is field 10, utime 14, stime 15.
            long minflt = long.Parse(f[7], CultureInfo.InvariantCulture);
            long utime = long.Parse(f[11], CultureInfo.InvariantCulture);
            long stime = long.Parse(f[12], CultureInfo.InvariantCulture);
            return new ThreadCpu(utime / TicksPerSecond, stime / TicksPerSecond, minflt);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return Zero;
        }
    }

    public static ThreadCpu operator -(ThreadCpu a, ThreadCpu b) =>
        new(a.UserSeconds - b.UserSeconds, a.SystemSeconds - b.SystemSeconds, a.MinorFaults - b.MinorFaults);
}
