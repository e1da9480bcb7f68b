using System.Text;
using Ferry.Protocol;
using Ferry.Protocol.Messages;

namespace Ferry.Tests.Fuzz;

/// <summary>
/// Found by the control-json fuzz target in CI (fuzz/README.md): a PostCopyComplete whose
/// latency was <c>0.1e3085</c> decoded as positive infinity, which JSON cannot carry, so the same
/// message could not be encoded again (the report writer would throw far from the cause). A number
/// outside double's range is now refused as a MalformedFrame where it is read.
/// </summary>
public sealed class ControlJsonNumberRangeTests
{
    public static TheoryData<string> FoundByFuzzing => new()
    {
        """{"digestMatches":true,"destinationDigest":"","problem":null,"faults":3,"faultLatencyP50Ms":0.1e3085,"zeroFilledOnFault":1,"resumeOps":1000,"runOps":5}""",
        """{"digestMatches":true,"faults":3,"faultLatencyP50Ms":0.5,"faultLatencyMaxMs":2401e308,"duplicatePages":0}""",
        """{"digestMatches":true,"faults":3,"resumeOps":1000,"runOps":5000,"runMs":55.1e3085}""",
        """{"faultLatencyP99Ms":-1e309}""",
    };

    [Theory]
    [MemberData(nameof(FoundByFuzzing))]
    public void A_number_beyond_double_range_is_malformed(string json)
    {
        var ex = Assert.Throws<ProtocolException>(() => ControlJson.Decode<PostCopyComplete>(Encoding.UTF8.GetBytes(json), "post-copy complete"));
        Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
        Assert.Contains("finite", ex.Message);
    }

    [Fact]
    public void Large_but_finite_numbers_still_round_trip()
    {
        var decoded = ControlJson.Decode<PostCopyComplete>(
            """{"digestMatches":true,"faultLatencyMaxMs":1.5e308,"runMs":-2e300,"resumeMs":0.25}"""u8, "post-copy complete");
        Assert.Equal(1.5e308, decoded.FaultLatencyMaxMs);
        Assert.Equal(-2e300, decoded.RunMs);
        Assert.Equal(decoded, ControlJson.Decode<PostCopyComplete>(ControlJson.Encode(decoded), "post-copy complete"));
    }
}
