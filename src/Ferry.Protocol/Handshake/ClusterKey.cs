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

    /// <summary>A key file that is not text is used byte for byte, and must hold at least this many bytes.</summary>
    public const int MinimumBinaryLength = 32;

    /// <summary>No key file is larger; anything bigger (a log, an image, /dev/zero) is refused rather than read.</summary>
    public const int MaximumFileLength = 64 * 1024;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly byte[] _key;

    public ClusterKey(ReadOnlySpan<byte> key)
    {
        if (key.Length < MinimumLength)
        {
            throw new ArgumentException($"cluster key must be at least {MinimumLength} bytes, got {key.Length}", nameof(key));
        }
        _key = key.ToArray();
    }

    /// <summary>
    /// Reads a key file. A text file (valid UTF-8 with no control characters but tab, CR and LF; a
    /// leading byte-order mark is skipped) is a text key: surrounding whitespace trimmed, at least
    /// <see cref="MinimumLength"/> characters, its UTF-8 bytes are the key — so hex written by
    /// <see cref="Generate"/> or <c>xxd -p</c>, base64 or a passphrase keep the key they always
    /// gave. Any other file is a binary key: its bytes exactly as stored, nothing trimmed or
    /// decoded, at least <see cref="MinimumBinaryLength"/> of them.
    /// </summary>
    public static ClusterKey Load(string path)
    {
        byte[] bytes;
        try
        {
            bytes = ReadBounded(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"cannot read key file '{path}': {ex.Message}", nameof(path), ex);
        }
        if (bytes.Length > MaximumFileLength)
        {
            throw new ArgumentException($"key file '{path}' is larger than {MaximumFileLength / 1024} KiB: not a key file");
        }
        if (AsText(bytes) is { } text)
        {
            text = text.Trim();
            if (text.Length < MinimumLength)
            {
                throw new ArgumentException($"key file '{path}' holds a text key of {text.Length} characters; at least {MinimumLength} are needed (e.g. 64 hex digits: head -c 32 /dev/urandom | xxd -p -c 64)");
            }
            return new ClusterKey(Encoding.UTF8.GetBytes(text));
        }
        if (bytes.Length < MinimumBinaryLength)
        {
            throw new ArgumentException($"key file '{path}' holds a binary key (not UTF-8 text) of {bytes.Length} bytes; a binary key needs at least {MinimumBinaryLength} bytes (e.g. head -c 32 /dev/urandom)");
        }
        return new ClusterKey(bytes);
    }

    /// <summary>The file's text if it is text (strict UTF-8, no control characters but whitespace), else null.</summary>
    private static string? AsText(byte[] bytes)
    {
        ReadOnlySpan<byte> span = bytes;
        if (span.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]))
        {
            span = span[3..];
        }
        string text;
        try
        {
            text = StrictUtf8.GetString(span);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
        foreach (char c in text)
        {
            if (char.IsControl(c) && c is not ('\t' or '\n' or '\r'))
            {
                return null;
            }
        }
        return text;
    }

    /// <summary>At most one byte more than <see cref="MaximumFileLength"/>, so an endless file (a device) cannot hang the read.</summary>
    private static byte[] ReadBounded(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var buffer = new byte[MaximumFileLength + 1];
        int total = 0;
        while (total < buffer.Length)
        {
            int n = file.Read(buffer, total, buffer.Length - total);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return buffer[..total];
    }

    /// <summary>A fresh random key as text (64 hex digits), for `ferry migrate` and tests.</summary>
    public static string Generate() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32)).ToLowerInvariant();

    public byte[] Mac(ReadOnlySpan<byte> data) => HMACSHA256.HashData(_key, data);

    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> mac) =>
        mac.Length == 32 && CryptographicOperations.FixedTimeEquals(Mac(data), mac);
}
