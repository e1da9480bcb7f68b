using System.Security.Cryptography;
using System.Text;

namespace Ferry.Protocol.Handshake;

/// <summary>
/// The secret every agent and client of a cluster shares. It is never sent: peers prove they
/// hold it with HMAC-SHA256 over fresh nonces.
/// </summary>
public sealed class ClusterKey
{
    public const int MinimumLength = 16;
    private readonly byte[] _key;

    public ClusterKey(ReadOnlySpan<byte> key)
    {
        if (key.Length < MinimumLength)
        {
            throw new ArgumentException($"cluster key must be at least {MinimumLength} bytes, got {key.Length}", nameof(key));
        }
        _key = key.ToArray();
    }

    /// <summary>Reads a key file: its text, surrounding whitespace trimmed.</summary>
    public static ClusterKey Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path).Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"cannot read key file '{path}': {ex.Message}", nameof(path), ex);
        }
        if (text.Length < MinimumLength)
        {
            throw new ArgumentException($"key file '{path}' holds {text.Length} characters; at least {MinimumLength} are needed");
        }
        return new ClusterKey(Encoding.UTF8.GetBytes(text));
    }

    /// <summary>A fresh random key as text, for `ferry migrate` and tests.</summary>
    public static string Generate() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32)).ToLowerInvariant();

    public byte[] Mac(ReadOnlySpan<byte> data) => HMACSHA256.HashData(_key, data);

    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> mac) =>
        mac.Length == 32 && CryptographicOperations.FixedTimeEquals(Mac(data), mac);
}
