using CsCheck;
using Ferry.Core.Progress;

namespace Ferry.Tests.Core;

public sealed class MonotonicEtaTests
{
    [Fact]
    public void Unknown_until_the_first_estimate()
    {
        var eta = new MonotonicEta();
        Assert.Null(eta.Update(0, null));
        Assert.Null(eta.Update(1, double.NaN));
        Assert.Null(eta.Update(2, double.PositiveInfinity));
        Assert.Equal(10, eta.Update(3, 10));
        Assert.Equal(10, eta.Update(3, null)); // unknown later: keep what is shown
    }

    [Fact]
    public void Accurate_estimates_count_down_with_time()
    {
        var eta = new MonotonicEta();
        for (int t = 0; t <= 10; t++)
        {
            Assert.Equal(10 - t, eta.Update(t, 10 - t));
        }
    }

    [Fact]
    public void A_worse_estimate_holds_the_countdown_instead_of_raising_it()
    {
        var eta = new MonotonicEta();
        Assert.Equal(10, eta.Update(0, 10));
        Assert.Equal(10, eta.Update(1, 30));  // behind: hold at 10, do not jump to 30
        Assert.Equal(10, eta.Update(2, 25));
        Assert.Equal(8, eta.Update(3, 8));    // reality caught up
        Assert.Equal(2, eta.Update(4, 2));    // a better estimate drops at once
        Assert.Equal(0, eta.Update(5, -3));   // never negative
    }

    [Fact]
    public void Shown_value_never_increases_and_is_never_negative()
    {
        var step = Gen.Select(
            Gen.Double[0, 5],
            Gen.Frequency(
                (6, Gen.Double[-10, 1000].Select(d => (double?)d)),
                (1, Gen.Const((double?)null)),
                (1, Gen.OneOf(Gen.Const((double?)double.NaN), Gen.Const((double?)double.PositiveInfinity), Gen.Const((double?)double.NegativeInfinity)))));
        step.Array[1, 50].Sample(steps =>
        {
            var eta = new MonotonicEta();
            double now = 0;
            double? previous = null;
            foreach (var (dt, raw) in steps)
            {
                now += dt;
                double? shown = eta.Update(now, raw);
                if (previous is { } p)
                {
                    Assert.NotNull(shown);
                    Assert.True(shown <= p, $"ETA rose from {p} to {shown}");
                }
                if (shown is { } s)
                {
                    Assert.True(s >= 0 && double.IsFinite(s), $"ETA {s}");
                }
                previous = shown;
            }
        }, iter: 2000);
    }
}
