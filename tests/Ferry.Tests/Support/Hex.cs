namespace Ferry.Tests.Support;

internal static class Hex
{
    /// <summary>Lower-case hex without separators.</summary>
    public static string Of(ReadOnlySpan<byte> bytes) => Convert.ToHexString(bytes).ToLowerInvariant();

    /// <summary>Parses hex written with spaces, newlines or '|' between groups for readability.</summary>
    public static byte[] Parse(string text) =>
        Convert.FromHexString(new string(text.Where(c => !char.IsWhiteSpace(c) && c != '|').ToArray()));

    /// <summary>Normalises a readable hex literal for comparison.</summary>
    public static string Normalize(string text) => Of(Parse(text));
}
