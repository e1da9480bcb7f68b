using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ferry.Protocol.Messages;

/// <summary>
/// Reads a JSON number into a <see cref="double"/> only when it is finite. System.Text.Json reads
/// <c>55.1e3085</c> as positive infinity without complaint, and then cannot write that value back
/// (JSON has no infinity): a peer could plant a value that breaks the report writer far from where
/// it came in. Found by the control-json fuzz target (fuzz/README.md); a number too large for a
/// double is malformed input, refused where it is read.
/// </summary>
public sealed class FiniteDoubleConverter : JsonConverter<double>
{
    public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        double value = reader.GetDouble();
        if (!double.IsFinite(value))
        {
            throw new JsonException("a number is too large to be a finite double");
        }
        return value;
    }

    public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
    {
        writer.WriteNumberValue(value);
    }
}
