using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Ferry.Protocol.Handshake;

namespace Ferry.Agent.Api;

/// <summary>
/// Every API request proves it holds the cluster key without sending it:
/// <c>X-Ferry-Auth: t=&lt;unix ms&gt;,n=&lt;nonce&gt;,s=&lt;hex HMAC-SHA256&gt;</c> over
/// "ferry-api/2", the agent the request is for (its authority, host:port, as the client addressed
/// it), the time, the nonce, the method, the path and query, and the SHA-256 of the body. The agent
/// accepts a signature once, within ±60 s of its clock, and only when the authority is one of its
/// own names: a request signed for one agent is refused by every other (before, a DELETE replayed
/// to another agent deleted the VM there).
/// </summary>
public static class ApiSignature
{
    public const string Header = "X-Ferry-Auth";
    public static readonly TimeSpan Skew = TimeSpan.FromSeconds(60);

    /// <summary>A header's fields, checked for form and freshness (all that can be checked before the body is read).</summary>
    public readonly record struct Parsed(string Time, string Nonce, byte[] Mac);

    public static string Sign(ClusterKey key, string authority, string method, string pathAndQuery, ReadOnlySpan<byte> body, DateTimeOffset now)
    {
        string t = now.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture);
        string n = Convert.ToHexString(RandomNumberGenerator.GetBytes(12)).ToLowerInvariant();
        string s = Convert.ToHexString(key.Mac(Transcript(authority, t, n, method, pathAndQuery, body))).ToLowerInvariant();
        return $"t={t},n={n},s={s}";
    }

    /// <summary>Checks a header's form and time without the key or the body; returns null when it may be verified, else the reason.</summary>
    public static string? Parse(string? header, DateTimeOffset now, out Parsed parsed)
    {
        parsed = default;
        if (string.IsNullOrEmpty(header))
        {
            return $"no {Header} header";
        }
        if (header.Length > 512)
        {
            return "malformed signature header";
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
        // In milliseconds, without building a date: any long is a valid input (t=10^15 was a 500 here).
        long nowMs = now.ToUnixTimeMilliseconds();
        if (Math.Abs(nowMs - ms) > (long)Skew.TotalMilliseconds)
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
        parsed = new Parsed(t, n, mac);
        return null;
    }

    /// <summary>Checks a parsed header's MAC for this request; returns null when valid, else the reason.</summary>
    public static string? Verify(ClusterKey key, in Parsed parsed, string authority, string method, string pathAndQuery, ReadOnlySpan<byte> body) =>
        key.Verify(Transcript(authority, parsed.Time, parsed.Nonce, method, pathAndQuery, body), parsed.Mac)
            ? null
            : "signature does not match the cluster key (or was made for another agent)";

    /// <summary>Both checks at once; returns null when valid, else the reason.</summary>
    public static string? Verify(ClusterKey key, string? header, string authority, string method, string pathAndQuery, ReadOnlySpan<byte> body, DateTimeOffset now, out string nonce)
    {
        nonce = "";
        string? reason = Parse(header, now, out Parsed parsed) ?? Verify(key, parsed, authority, method, pathAndQuery, body);
        if (reason is null)
        {
            nonce = parsed.Nonce;
        }
        return reason;
    }

    private static byte[] Transcript(string authority, string t, string n, string method, string pathAndQuery, ReadOnlySpan<byte> body)
    {
        string bodyHash = Convert.ToHexString(SHA256.HashData(body)).ToLowerInvariant();
        return Encoding.UTF8.GetBytes($"ferry-api/2\n{authority.ToLowerInvariant()}\n{t}\n{n}\n{method.ToUpperInvariant()}\n{pathAndQuery}\n{bodyHash}");
    }
}
