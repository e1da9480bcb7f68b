using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Ferry.Protocol.Handshake;

namespace Ferry.Agent.Api;

/// <summary>
/// Every API request proves it holds the cluster key without sending it:
/// <c>X-Ferry-Auth: t=&lt;unix ms&gt;,n=&lt;nonce&gt;,s=&lt;hex HMAC-SHA256&gt;</c> over
/// "ferry-api/1", the time, the nonce, the method, the path and query, and the SHA-256 of the body.
/// The agent accepts a signature once, within ±60 s of its clock.
/// </summary>
public static class ApiSignature
{
    public const string Header = "X-Ferry-Auth";
    public static readonly TimeSpan Skew = TimeSpan.FromSeconds(60);

    public static string Sign(ClusterKey key, string method, string pathAndQuery, ReadOnlySpan<byte> body, DateTimeOffset now)
    {
        string t = now.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture);
        string n = Convert.ToHexString(RandomNumberGenerator.GetBytes(12)).ToLowerInvariant();
        string s = Convert.ToHexString(key.Mac(Transcript(t, n, method, pathAndQuery, body))).ToLowerInvariant();
        return $"t={t},n={n},s={s}";
    }

    /// <summary>Checks a header value; returns null when valid, else the reason (for the refusal log).</summary>
    public static string? Verify(ClusterKey key, string? header, string method, string pathAndQuery, ReadOnlySpan<byte> body, DateTimeOffset now, out string nonce)
    {
        nonce = "";
        if (string.IsNullOrEmpty(header))
        {
            return $"no {Header} header";
        }
        string? t = null, n = null, s = null;
        foreach (string part in header.Split(',', StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0)
            {
                return "malformed signature header";
            }
            string v = part[(eq + 1)..];
            switch (part[..eq])
            {
                case "t": t = v; break;
                case "n": n = v; break;
                case "s": s = v; break;
                default: return "malformed signature header";
            }
        }
        if (t is null || n is null || s is null || n.Length is < 8 or > 64)
        {
            return "incomplete signature header";
        }
        if (!long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out long ms))
        {
            return "bad signature timestamp";
        }
        if ((now - DateTimeOffset.FromUnixTimeMilliseconds(ms)).Duration() > Skew)
        {
            return "signature timestamp outside ±60 s";
        }
        byte[] mac;
        try
        {
            mac = Convert.FromHexString(s);
        }
        catch (FormatException)
        {
            return "signature is not hex";
        }
        if (!key.Verify(Transcript(t, n, method, pathAndQuery, body), mac))
        {
            return "signature does not match the cluster key";
        }
        nonce = n;
        return null;
    }

    private static byte[] Transcript(string t, string n, string method, string pathAndQuery, ReadOnlySpan<byte> body)
    {
        string bodyHash = Convert.ToHexString(SHA256.HashData(body)).ToLowerInvariant();
        return Encoding.UTF8.GetBytes($"ferry-api/1\n{t}\n{n}\n{method.ToUpperInvariant()}\n{pathAndQuery}\n{bodyHash}");
    }
}
