using CsCheck;
using Ferry.Core.Pacing;

namespace Ferry.Tests.Core;

/// <summary>The bucket is pure arithmetic over a caller's clock; these tests drive a fake one.</summary>
public sealed class TokenBucketTests
{
    /// <summary>A sender that asks, waits as told (on the fake clock), sends; returns total bytes and end time.</summary>
    private static (double Bytes, double Seconds) SendFrames(TokenBucket bucket, int frames, int frameBytes, double start = 0)
    {
        double now = start, bytes = 0;
        for (int i = 0; i < frames; i++)
        {
            now += bucket.Take(frameBytes, now).TotalSeconds;
            bytes += frameBytes;
        }
        return (bytes, now - start);
    }

    [Theory]
    [InlineData(1e6, 4096)]
    [InlineData(128.0 * (1 << 20), 1_050_000)]
    [InlineData(64 * 1024, 200_000)]
    public void Long_run_rate_is_the_configured_rate(double rate, int frameBytes)
    {
        var bucket = new TokenBucket(rate, frameBytes, nowSeconds: 0);
        var (bytes, seconds) = SendFrames(bucket, 5000, frameBytes);
        double achieved = bytes / seconds;
        Assert.InRange(achieved, rate * 0.99, rate * 1.001);
    }

    [Fact]
    public void Sender_never_gets_ahead_of_the_rate_since_start()
    {
        // For any request sizes and idle gaps: bytes sent by the time each send happens ≤ rate × time.
        var gen = Gen.Select(Gen.Int[1, 300_000], Gen.Double[0, 0.2]).Array[1, 200];
        Gen.Select(Gen.Double[65_536, 1e9], gen).Sample((rate, requests) =>
        {
            var bucket = new TokenBucket(rate, 256 * 4104, nowSeconds: 0);
            double now = 0, sent = 0;
            foreach (var (bytes, idle) in requests)
            {
                now += idle;
                now += bucket.Take(bytes, now).TotalSeconds;
                sent += bytes;
                // 1e-7 s: TimeSpan rounds waits to 100 ns ticks.
                Assert.True(sent <= rate * (now + 1e-7) + 1, $"sent {sent} by {now} s at {rate} B/s");
            }
        }, iter: 500);
    }

    [Fact]
    public void After_a_long_idle_only_a_small_burst_passes_without_waiting()
    {
        const double Rate = 10e6;
        const int Frame = 10_000;
        var bucket = new TokenBucket(Rate, Frame, nowSeconds: 0);
        double now = 100; // 100 s idle: without a cap that would be 1 GB of credit
        double free = 0;
        while (bucket.Take(Frame, now) == TimeSpan.Zero)
        {
            free += Frame;
        }
        double burst = Math.Max(Frame, Rate * 0.05);
        Assert.InRange(free, burst - Frame, burst);
    }

    [Fact]
    public void Burst_is_at_least_one_whole_frame()
    {
        // 64 KiB/s is less than one 1 MiB frame per 50 ms: a whole frame must still pass after idling.
        var bucket = new TokenBucket(65_536, 1 << 20, nowSeconds: 0);
        Assert.Equal(TimeSpan.Zero, bucket.Take(1 << 20, nowSeconds: 1000));
    }

    [Fact]
    public void Starts_empty_and_tells_how_long_to_wait()
    {
        var bucket = new TokenBucket(1000, 100, nowSeconds: 5);
        Assert.Equal(1000, bucket.Rate);
        Assert.Equal(TimeSpan.FromSeconds(1), bucket.Take(1000, 5));
        Assert.Equal(TimeSpan.FromSeconds(1.5), bucket.Take(500, 5)); // debt accumulates
        Assert.Equal(TimeSpan.Zero, bucket.Take(0, 6.5));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void Rate_must_be_positive(double rate)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenBucket(rate, 1, 0));
    }
}
