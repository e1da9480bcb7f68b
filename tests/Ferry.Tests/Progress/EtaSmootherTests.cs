using CsCheck;
using Ferry.Core.Progress;

namespace Ferry.Tests.Progress;

/// <summary>The shown ETA: steady between estimates, but never held against them (it showed "4.3 s" for 115 s before).</summary>
public sealed class EtaSmootherTests
{
    [Fact]
    public void Unknown_is_shown_as_unknown()
    {
        var eta = new EtaSmoother();
        Assert.Null(eta.Update(0, EtaKind.Unknown, null));
        Assert.Null(eta.Update(1, EtaKind.Estimate, double.NaN));
        Assert.Equal(10, eta.Update(2, EtaKind.Estimate, 10));
        Assert.Null(eta.Update(3, EtaKind.Unknown, null)); // no estimate any more: do not keep an old one
    }

    [Fact]
    public void Accurate_estimates_count_down_with_time()
    {
        var eta = new EtaSmoother();
        for (int t = 0; t <= 10; t++)
        {
            Assert.Equal(10 - t, eta.Update(t, EtaKind.Estimate, 10 - t)!.Value, 9);
        }
    }

    [Fact]
    public void A_worse_estimate_is_shown_not_held()
    {
        var eta = new EtaSmoother();
        Assert.Equal(4.3, eta.Update(0, EtaKind.Estimate, 4.3));
        // The estimate grows while time passes: the shown value follows it up (within the snap band), never held at 4.3 nor counted down to 0.
        double previous = 4.3;
        for (int t = 1; t <= 115; t++)
        {
            double raw = 4.3 + t * 3;
            double shown = eta.Update(t, EtaKind.Estimate, raw)!.Value;
            Assert.True(shown > previous, $"at {t} s the shown ETA went from {previous} to {shown} while the estimate rose to {raw}");
            Assert.InRange(shown, raw - (EtaSmoother.SnapShare * raw + EtaSmoother.SnapSeconds), raw);
            previous = shown;
        }
        // A big jump is shown at once.
        Assert.Equal(800, eta.Update(115.1, EtaKind.Estimate, 800));
        // A much better one drops at once too.
        Assert.Equal(2, eta.Update(116, EtaKind.Estimate, 2));
        Assert.Equal(0, eta.Update(117, EtaKind.Estimate, -3)); // never negative
    }

    [Fact]
    public void Jitter_is_smoothed_and_the_shown_value_converges_to_a_steady_estimate()
    {
        var eta = new EtaSmoother();
        eta.Update(0, EtaKind.Estimate, 100);
        // One noisy estimate 10 % high, 100 ms later: the countdown moves only part of the way toward it.
        double shown = eta.Update(0.1, EtaKind.Estimate, 110)!.Value;
        Assert.InRange(shown, 99.9, 102);
        // Held 10 % high for a few seconds, the shown value follows it (time constant 1 s).
        double t = 0.1;
        double raw = 110;
        for (int i = 0; i < 50; i++)
        {
            t += 0.1;
            raw -= 0.1;
            shown = eta.Update(t, EtaKind.Estimate, raw)!.Value;
        }
        Assert.Equal(raw, shown, tolerance: 0.1);
    }

    [Fact]
    public void A_change_of_kind_is_shown_at_once()
    {
        var eta = new EtaSmoother();
        eta.Update(0, EtaKind.Estimate, 10);
        Assert.Equal(12, eta.Update(0.1, EtaKind.NotConverging, 12));
    }

    [Fact]
    public void Shown_value_is_never_negative_and_always_finite_and_within_reach_of_the_estimate()
    {
        var step = Gen.Select(
            Gen.Double[0, 5],
            Gen.Frequency(
                (6, Gen.Double[-10, 1000].Select(d => (double?)d)),
                (1, Gen.Const((double?)null)),
                (1, Gen.OneOf(Gen.Const((double?)double.NaN), Gen.Const((double?)double.PositiveInfinity), Gen.Const((double?)double.NegativeInfinity)))));
        step.Array[1, 50].Sample(steps =>
        {
            var eta = new EtaSmoother();
            double now = 0;
            foreach (var (dt, raw) in steps)
            {
                now += dt;
                double? shown = eta.Update(now, EtaKind.Estimate, raw);
                if (raw is not { } r || !double.IsFinite(r))
                {
                    Assert.Null(shown);
                    continue;
                }
                double s = shown!.Value;
                Assert.True(s >= 0 && double.IsFinite(s), $"ETA {s}");
                // Never further from the estimate than the snap threshold allows.
                double target = Math.Max(0, r);
                Assert.True(Math.Abs(s - target) <= EtaSmoother.SnapShare * Math.Max(target, s) + EtaSmoother.SnapSeconds + 1e-9,
                    $"shown {s} for an estimate of {target}");
            }
        }, iter: 2000);
    }
}
