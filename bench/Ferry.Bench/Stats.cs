namespace Ferry.Bench;

internal static class Stats
{
    /// <summary>Median; the mean of the two middle values for an even count. NaN for no values.</summary>
    public static double Median(IEnumerable<double> values)
    {
        double[] v = values.Where(x => !double.IsNaN(x)).Order().ToArray();
        if (v.Length == 0)
        {
            return double.NaN;
        }
        int mid = v.Length / 2;
        return v.Length % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
    }

    /// <summary>The most frequent value (first seen wins a tie).</summary>
    public static string Mode(IEnumerable<string> values) =>
        values.GroupBy(x => x).OrderByDescending(g => g.Count()).Select(g => g.Key).FirstOrDefault() ?? "";

    public static double Min(IEnumerable<double> values) => values.DefaultIfEmpty(double.NaN).Min();

    public static double Max(IEnumerable<double> values) => values.DefaultIfEmpty(double.NaN).Max();
}
