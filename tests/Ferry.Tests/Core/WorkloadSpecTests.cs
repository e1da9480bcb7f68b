using CsCheck;
using Ferry.Core.Workloads;

namespace Ferry.Tests.Core;

public sealed class WorkloadSpecTests
{
    [Theory]
    [InlineData("idle")]
    [InlineData(" IDLE ")]
    [InlineData("idle:")]
    public void Idle_parses(string text)
    {
        Assert.True(WorkloadSpec.TryParse(text, out var spec, out string error), error);
        Assert.Equal(WorkloadSpec.Idle, spec);
        Assert.Equal("idle", spec.ToString());
    }

    [Fact]
    public void Memtouch_parses_every_parameter()
    {
        var spec = WorkloadSpec.Parse("memtouch:rate=20000,wss=256MiB,pattern=zipf,theta=0.8,content=random,bytes=64,seed=7");
        Assert.Equal(new WorkloadSpec
        {
            Program = "memtouch",
            Rate = 20000,
            WorkingSetBytes = 256L << 20,
            Pattern = AccessPattern.Zipf,
            Theta = 0.8,
            Content = PageContent.Random,
            BytesPerWrite = 64,
            Seed = 7,
        }, spec);

        var hc = WorkloadSpec.Parse(" MemTouch : Pattern=Hot-Cold , HOT=0.25, hotprob=0.75 ");
        Assert.Equal(AccessPattern.HotCold, hc.Pattern);
        Assert.Equal(0.25, hc.HotFraction);
        Assert.Equal(0.75, hc.HotProbability);
        Assert.Equal(AccessPattern.HotCold, WorkloadSpec.Parse("memtouch:pattern=hotcold").Pattern);
        Assert.Equal(AccessPattern.Sequential, WorkloadSpec.Parse("memtouch:pattern=sequential").Pattern);
    }

    [Fact]
    public void Memtouch_defaults_are_the_usual_dirtying_benchmark()
    {
        var spec = WorkloadSpec.Parse("memtouch");
        Assert.Equal("memtouch", spec.Program);
        Assert.Equal(0, spec.Rate);
        Assert.Equal(256L << 20, spec.WorkingSetBytes);
        Assert.Equal(AccessPattern.Uniform, spec.Pattern);
        Assert.Equal(8, spec.BytesPerWrite);
        Assert.Equal(PageContent.Mix, spec.Content);
        Assert.Equal(1UL, spec.Seed);
        Assert.Equal("memtouch:rate=0,wss=256MiB,pattern=uniform,content=mix,bytes=8,seed=1", spec.ToString());
    }

    [Theory]
    [InlineData("kvstore", "unknown workload 'kvstore' (known: idle, memtouch)")]
    [InlineData("", "unknown workload '' (known: idle, memtouch)")]
    [InlineData("idle:rate=5", "workload 'idle' takes no parameters")]
    [InlineData("memtouch:rate", "memtouch parameter 'rate' is not key=value")]
    [InlineData("memtouch:=5", "memtouch parameter '=5' is not key=value")]
    [InlineData("memtouch:colour=red", "unknown memtouch parameter 'colour' (known: rate, wss, pattern, hot, hotprob, theta, content, bytes, seed)")]
    [InlineData("memtouch:rate=-1", "bad memtouch parameter 'rate=-1': rate must be a whole number of page writes per second (0 = unthrottled)")]
    [InlineData("memtouch:rate=fast", "bad memtouch parameter 'rate=fast': rate must be a whole number of page writes per second (0 = unthrottled)")]
    [InlineData("memtouch:wss=1KiB", "bad memtouch parameter 'wss=1KiB': wss must be at least one page (4096)")]
    [InlineData("memtouch:wss=lots", "bad memtouch parameter 'wss=lots': 'lots' is not a size (examples: 4096, 256MiB, 1GiB, 1.5GB)")]
    [InlineData("memtouch:pattern=random", "bad memtouch parameter 'pattern=random': pattern must be uniform, sequential, hot-cold or zipf")]
    [InlineData("memtouch:hot=0", "bad memtouch parameter 'hot=0': hot must be a fraction in (0, 1]")]
    [InlineData("memtouch:hot=1.5", "bad memtouch parameter 'hot=1.5': hot must be a fraction in (0, 1]")]
    [InlineData("memtouch:hotprob=2", "bad memtouch parameter 'hotprob=2': hotprob must be a probability in [0, 1]")]
    [InlineData("memtouch:theta=0", "bad memtouch parameter 'theta=0': theta must be a number in (0, 10)")]
    [InlineData("memtouch:theta=10", "bad memtouch parameter 'theta=10': theta must be a number in (0, 10)")]
    [InlineData("memtouch:content=ones", "bad memtouch parameter 'content=ones': content must be zero, text, random or mix")]
    [InlineData("memtouch:bytes=0", "bad memtouch parameter 'bytes=0': bytes must be between 1 and 4096")]
    [InlineData("memtouch:bytes=4097", "bad memtouch parameter 'bytes=4097': bytes must be between 1 and 4096")]
    [InlineData("memtouch:seed=-1", "bad memtouch parameter 'seed=-1': seed must be a non-negative whole number")]
    public void Bad_text_gives_a_clear_error(string text, string message)
    {
        Assert.False(WorkloadSpec.TryParse(text, out var spec, out string error));
        Assert.Equal(message, error);
        Assert.Equal(WorkloadSpec.Idle, spec);
        Assert.Equal(message, Assert.Throws<FormatException>(() => WorkloadSpec.Parse(text)).Message);
    }

    internal static readonly Gen<WorkloadSpec> Memtouch =
        Gen.Select(
            Gen.Long[0, 10_000_000],
            Gen.Long[4096, 1L << 40],
            Gen.Enum<AccessPattern>(),
            Gen.Double[1e-6, 1],
            Gen.Double[0, 1],
            Gen.Double[1e-3, 9.999],
            Gen.Enum<PageContent>(),
            Gen.Select(Gen.Int[1, 4096], Gen.ULong),
            (rate, wss, pattern, hot, hotProb, theta, content, bs) => new WorkloadSpec
            {
                Program = "memtouch",
                Rate = rate,
                WorkingSetBytes = wss,
                Pattern = pattern,
                HotFraction = hot,
                HotProbability = hotProb,
                Theta = theta,
                Content = content,
                BytesPerWrite = bs.Item1,
                Seed = bs.Item2,
            });

    [Fact]
    public void Canonical_text_parses_back_to_an_equal_spec()
    {
        Memtouch.Sample(spec =>
        {
            string text = spec.ToString();
            Assert.True(WorkloadSpec.TryParse(text, out var back, out string error), $"'{text}': {error}");
            Assert.Equal(spec, back);
            Assert.Equal(text, back.ToString());
        }, iter: 2000);
    }

    [Fact]
    public void Parsed_then_printed_text_is_a_fixed_point()
    {
        // Parameters a pattern does not use still survive the trip (the spec records them).
        foreach (string text in new[]
        {
            "memtouch:pattern=uniform,theta=0.5",
            "memtouch:pattern=zipf,hot=0.3,hotprob=0.6",
            "memtouch:pattern=sequential,theta=2,hot=0.5",
        })
        {
            WorkloadSpec spec = WorkloadSpec.Parse(text);
            Assert.Equal(spec, WorkloadSpec.Parse(spec.ToString()));
        }
    }

    [Fact]
    public void Any_text_is_parsed_or_refused_without_throwing()
    {
        string[] pieces = ["memtouch", "idle", ":", ",", "=", "rate", "wss", "pattern", "zipf", "hot", "theta", "bytes", "seed", "1", "-1", "1e9", "MiB", " ", "NaN", "∞"];
        Gen.Int[0, pieces.Length - 1].Array[0, 12].Sample(ix =>
        {
            string text = string.Concat(ix.Select(i => pieces[i]));
            if (WorkloadSpec.TryParse(text, out var spec, out string error))
            {
                Assert.Equal(spec, WorkloadSpec.Parse(spec.ToString()));
            }
            else
            {
                Assert.False(string.IsNullOrWhiteSpace(error));
            }
        }, iter: 3000);
    }
}
