using Ferry.Core.Policy;
using Ferry.Core.Progress;

namespace Ferry.Tests.Core;

public sealed class PreCopyEtaTests
{
    private static readonly PreCopyOptions Defaults = new();

    [Fact]
    public void A_clean_guest_needs_only_the_rest_of_the_round()
    {
        double? eta = PreCopyEta.Estimate(Defaults, round: 2, roundPages: 10_000, pagesLeftInRound: 5_000,
            sendPagesPerSecond: 1_000, shrink: 0, wireBytesSoFar: 0, ramBytes: 1L << 30, elapsedSeconds: 1);
        Assert.Equal(5.0, eta!.Value, 3);
    }

    [Fact]
    public void A_converging_series_adds_the_rounds_until_the_rest_fits_the_downtime_budget()
    {
        // 1,000 pages/s for 300 ms = 300-page budget; rounds after this one: 5,000, 2,500, 1,250, 625, 312.5, then 156 ≤ 300 is the final copy.
        double? eta = PreCopyEta.Estimate(Defaults, 1, 10_000, 0, 1_000, 0.5, 0, 1L << 30, 0);
        double expected = (5_000 + 2_500 + 1_250 + 625 + 312.5 + 156.25) / 1_000;
        Assert.Equal(expected, eta!.Value, 3);
    }

    [Fact]
    public void A_series_that_does_not_converge_is_bounded_by_the_byte_cap()
    {
        var options = new PreCopyOptions { MaxRamMultiple = 2, Timeout = null };
        long ram = 1_000 * 4096L;
        // Cap 2 × RAM = 2,000 pages, 500 already sent → 1,500 pages at 100 pages/s = 15 s, plus the final copy of 10,000 × 1.2 pages.
        double? eta = PreCopyEta.Estimate(options, 3, 10_000, 10_000, 100, 1.2, 500 * 4096L, ram, 10);
        Assert.Equal(15 + 12_000 / 100.0, eta!.Value, 3);
    }

    [Fact]
    public void No_send_rate_means_no_estimate()
    {
        Assert.Null(PreCopyEta.Estimate(Defaults, 1, 10, 10, 0, 0.1, 0, 4096, 0));
    }
}
