namespace Ferry.Vm.Programs;

/// <summary>
/// Zipf ranks 1..n with P(k) ∝ k^-θ by rejection-inversion (Hörmann and Derflinger, 1996):
/// O(1) per sample and no table, so a 16 GiB working set costs nothing to set up. Only
/// constants live here; the random state is the caller's (a guest register).
/// </summary>
internal sealed class ZipfSampler
{
    private const int MaxAttempts = 64;
    private readonly long _n;
    private readonly double _theta;
    private readonly double _hIntegralX1;
    private readonly double _hIntegralN;
    private readonly double _s;

    public ZipfSampler(long n, double theta)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        _n = n;
        _theta = theta;
        _hIntegralX1 = HIntegral(1.5) - 1.0;
        _hIntegralN = HIntegral(n + 0.5);
        _s = 2.0 - HIntegralInverse(HIntegral(2.5) - H(2.0));
    }

    /// <summary>A rank in [1, n]; rank 1 is the most frequent.</summary>
    public long Sample(ref ulong rngState)
    {
        for (int attempt = 0; attempt < MaxAttempts; attempt++)
        {
            double u = _hIntegralN + SplitMix64.NextDouble(ref rngState) * (_hIntegralX1 - _hIntegralN);
            double x = HIntegralInverse(u);
            long k = (long)(x + 0.5);
            k = Math.Clamp(k, 1, _n);
            if (k - x <= _s || u >= HIntegral(k + 0.5) - H(k))
            {
                return k;
            }
        }
        return 1; // Practically unreachable (acceptance is > 90 %); keeps the loop bounded.
    }

    private double H(double x) => Math.Exp(-_theta * Math.Log(x));

    private double HIntegral(double x)
    {
        double logX = Math.Log(x);
        return Helper2((1.0 - _theta) * logX) * logX;
    }

    private double HIntegralInverse(double x)
    {
        double t = x * (1.0 - _theta);
        if (t < -1.0)
        {
            t = -1.0;
        }
        return Math.Exp(Helper1(t) * x);
    }

    // log1p(x)/x, continuous at 0.
    private static double Helper1(double x) =>
        Math.Abs(x) > 1e-8 ? Math.Log(1.0 + x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));

    // expm1(x)/x, continuous at 0.
    private static double Helper2(double x) =>
        Math.Abs(x) > 1e-8 ? (Math.Exp(x) - 1.0) / x : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}
