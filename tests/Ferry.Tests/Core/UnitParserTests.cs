using Ferry.Core.Units;

namespace Ferry.Tests.Core;

public sealed class UnitParserTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("0", 0L)]
    [InlineData("1B", 1L)]
    [InlineData("1KiB", 1024L)]
    [InlineData("256MiB", 256L << 20)]
    [InlineData("1GiB", 1L << 30)]
    [InlineData("2TiB", 2L << 40)]
    [InlineData("1KB", 1000L)]
    [InlineData("1.5GB", 1_500_000_000L)]
    [InlineData("3TB", 3_000_000_000_000L)]
    [InlineData("4K", 4096L)]
    [InlineData("16M", 16L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData(" 1 GiB ", 1L << 30)]
    [InlineData("1gib", 1L << 30)]
    [InlineData("0.5MiB", 512L * 1024)]
    [InlineData("1e3", 1000L)]
    public void Sizes_parse(string text, long expected)
    {
        Assert.True(UnitParser.TryParseBytes(text, out long bytes, out string error), error);
        Assert.Equal(expected, bytes);
        Assert.Equal("", error);
        Assert.Equal(expected, UnitParser.ParseBytes(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("GiB")]
    [InlineData("B")]
    [InlineData("-1")]
    [InlineData("-1GiB")]
    [InlineData("ten")]
    [InlineData("1,000")]
    [InlineData("1 PiB")]
    [InlineData("NaN")]
    [InlineData("NaNGiB")]
    [InlineData("0x100")]
    public void Bad_sizes_are_refused_with_examples(string text)
    {
        Assert.False(UnitParser.TryParseBytes(text, out _, out string error));
        Assert.Contains($"'{text}' is not a size", error);
        Assert.Contains("256MiB", error);
        Assert.Equal(error, Assert.Throws<FormatException>(() => UnitParser.ParseBytes(text)).Message);
    }

    [Theory]
    [InlineData("1e30")]
    [InlineData("9223372036854775807")]
    [InlineData("10000000TiB")]
    [InlineData("Infinity")]
    public void Huge_sizes_are_refused_as_too_large(string text)
    {
        Assert.False(UnitParser.TryParseBytes(text, out _, out string error));
        Assert.Equal($"'{text}' is too large", error);
    }

    [Theory]
    [InlineData("125MB/s", 125_000_000L)]
    [InlineData("125MB", 125_000_000L)]
    [InlineData("1Gbit/s", 125_000_000L)]
    [InlineData("100Mbit/s", 12_500_000L)]
    [InlineData("8Kbit", 1000L)]
    [InlineData("800bit/s", 100L)]
    [InlineData("64MiB/s", 64L << 20)]
    [InlineData("0", 0L)]
    [InlineData("1000", 1000L)]
    public void Rates_parse(string text, long expected)
    {
        Assert.True(UnitParser.TryParseRate(text, out long rate, out string error), error);
        Assert.Equal(expected, rate);
        Assert.Equal(expected, UnitParser.ParseRate(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("fast")]
    [InlineData("-1MB/s")]
    [InlineData("-5Mbit/s")]
    [InlineData("Mbit/s")]
    [InlineData("NaNMbit/s")]
    [InlineData("InfinityGbit/s")]
    [InlineData("1e30Gbit/s")]
    public void Bad_rates_are_refused_with_examples(string text)
    {
        Assert.False(UnitParser.TryParseRate(text, out long rate, out string error), $"parsed as {rate}");
        Assert.Contains($"'{text}'", error);
        Assert.Throws<FormatException>(() => UnitParser.ParseRate(text));
    }

    [Theory]
    [InlineData("300ms", 300_000L)]
    [InlineData("2.5s", 2_500_000L)]
    [InlineData("10m", 600_000_000L)]
    [InlineData("1h", 3_600_000_000L)]
    [InlineData("500us", 500L)]
    [InlineData("3", 3_000_000L)]
    [InlineData("0", 0L)]
    [InlineData(" 1 s ", 1_000_000L)]
    public void Durations_parse(string text, long microseconds)
    {
        Assert.True(UnitParser.TryParseDuration(text, out TimeSpan d, out string error), error);
        Assert.Equal(TimeSpan.FromMicroseconds(microseconds), d);
        Assert.Equal(d, UnitParser.ParseDuration(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("ms")]
    [InlineData("-1s")]
    [InlineData("soon")]
    [InlineData("5min")]
    [InlineData("NaNs")]
    [InlineData("1e300h")]
    public void Bad_durations_are_refused_with_examples(string text)
    {
        Assert.False(UnitParser.TryParseDuration(text, out _, out string error));
        Assert.Equal($"'{text}' is not a duration (examples: 300ms, 3s, 1h)", error);
        Assert.Throws<FormatException>(() => UnitParser.ParseDuration(text));
    }

    [Theory]
    [InlineData(0, "0 B")]
    [InlineData(1023, "1023 B")]
    [InlineData(1024, "1.0 KiB")]
    [InlineData(1536, "1.5 KiB")]
    [InlineData(1L << 30, "1.0 GiB")]
    [InlineData(5L << 40, "5.0 TiB")]
    [InlineData(5L << 50, "5120.0 TiB")]
    public void Bytes_format_in_binary_units(long bytes, string expected) =>
        Assert.Equal(expected, UnitParser.FormatBytes(bytes));

    [Fact]
    public void Rates_and_durations_format_for_people()
    {
        Assert.Equal("125.0 MB/s", UnitParser.FormatRate(125e6));
        Assert.Equal("12.5 ms", UnitParser.FormatDuration(TimeSpan.FromMicroseconds(12_500)));
        Assert.Equal("2.50 s", UnitParser.FormatDuration(TimeSpan.FromSeconds(2.5)));
        Assert.Equal("1m05s", UnitParser.FormatDuration(TimeSpan.FromSeconds(65)));
    }
}
