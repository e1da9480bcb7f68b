using System.Reflection;
using System.Text;
using Ferry.Protocol;
using Ferry.Protocol.Messages;

namespace Ferry.Tests.Fuzz;

/// <summary>
/// Found by the control-json and frames fuzz targets (fuzz/README.md): a control message with a
/// member left out — `{"reasXn":"ed"}` for an Abort, the golden Offer with one name misspelled —
/// decoded into a message whose non-nullable strings are <c>null</c>. ControlJson promises (its
/// RespectNullableAnnotations comment, docs/protocol.md §3.1) that a peer cannot put null there, so
/// that it never surfaces as a NullReferenceException later; the same message cannot even be
/// encoded again (the fuzzer's round trip threw JsonException). The source-generated
/// deserializer sets init-only members like constructor arguments, so a missing member becomes
/// null instead of keeping its <c>= ""</c> initializer. Either outcome is acceptable here: the
/// member keeps a non-null value, or the payload is refused as a MalformedFrame.
/// </summary>
public sealed class ControlJsonMissingMemberTests
{
    /// <summary>The fuzzer's inputs, without their selector byte, by the message they were decoded as.</summary>
    public static TheoryData<string, string> FoundByFuzzing => new()
    {
        { nameof(Abort), """{"reasXn":"ed"}""" },
        { nameof(Abort), "{}" },
        { nameof(SwitchoverReady), """{"G":true,"dPstination\u00ffgest":"","dem":null}""" },
        { nameof(Offer), """{"migrationId":"m-1","vmId":"vm-7","vmName":"web","tes":2,"workload":"idle","op\u0014":null,"technique":"pre","sou\u0011ceHost":"src","vc":160}""" },
        { nameof(Offer), """{"migrationId":"m-1","vmId":"vm-7","vmName":"web","memoryBytes":1048576,"vcpus":2,"opsLimitPerVcpu":null,"technique":"precopy","sourceHost":"src","vcpuStateBytes":160}""" },
        { nameof(OfferAccepted), """{"destinationHost":"dst","os":"Linux","processorCount":2,"pageInstall":"uffd"}""" },
        { nameof(DeviceState), """{"throttlePercent":0}""" },
        { nameof(PostCopyComplete), """{"digestMatches":true,"destinationDigest":"0123456789abcdef","problem":null,"faults":3}""" },
        { nameof(PostCopyResume), """{"s":12.25}""" },
        { nameof(PageChannelHello), """{"channel":1,"generation":0}""" },
    };

    [Theory]
    [MemberData(nameof(FoundByFuzzing))]
    public void A_missing_member_never_decodes_to_null(string message, string json)
    {
        byte[] payload = Encoding.UTF8.GetBytes(json);
        switch (message)
        {
            case nameof(Offer): Check<Offer>(payload); break;
            case nameof(OfferAccepted): Check<OfferAccepted>(payload); break;
            case nameof(DeviceState): Check<DeviceState>(payload); break;
            case nameof(SwitchoverReady): Check<SwitchoverReady>(payload); break;
            case nameof(Abort): Check<Abort>(payload); break;
            case nameof(PostCopyComplete): Check<PostCopyComplete>(payload); break;
            case nameof(PostCopyResume): Check<PostCopyResume>(payload); break;
            case nameof(PageChannelHello): Check<PageChannelHello>(payload); break;
            default: throw new ArgumentOutOfRangeException(nameof(message), message, null);
        }
    }

    [Fact]
    public void Every_control_message_with_no_members_has_no_nulls()
    {
        byte[] empty = "{}"u8.ToArray();
        Check<Offer>(empty);
        Check<OfferAccepted>(empty);
        Check<DeviceState>(empty);
        Check<SwitchoverReady>(empty);
        Check<Resumed>(empty);
        Check<Abort>(empty);
        Check<PostCopyComplete>(empty);
        Check<PostCopyResume>(empty);
        Check<PageChannelHello>(empty);
    }

    /// <summary>Refused as malformed, or decoded with every non-nullable string set and encodable again.</summary>
    private static void Check<T>(byte[] payload)
        where T : class
    {
        T decoded;
        try
        {
            decoded = ControlJson.Decode<T>(payload, typeof(T).Name);
        }
        catch (ProtocolException ex)
        {
            Assert.Equal(ProtocolErrorKind.MalformedFrame, ex.Kind);
            return;
        }
        var nullability = new NullabilityInfoContext();
        foreach (PropertyInfo p in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.PropertyType == typeof(string) && nullability.Create(p).ReadState == NullabilityState.NotNull)
            {
                Assert.True(p.GetValue(decoded) is not null, $"{typeof(T).Name}.{p.Name} decoded as null from {Encoding.UTF8.GetString(payload)}");
            }
        }
        byte[] again = ControlJson.Encode(decoded);
        Assert.Equal(decoded, ControlJson.Decode<T>(again, typeof(T).Name));
    }
}
