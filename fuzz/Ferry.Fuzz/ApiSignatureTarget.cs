using System.Globalization;
using System.Text;
using Ferry.Agent.Api;

namespace Ferry.Fuzz;

/// <summary>
/// The signed-request parser of the agent's API (src/Ferry.Agent/Api/ApiSignature.cs), as the
/// middleware uses it: <see cref="ApiSignature.Parse"/> on the X-Ferry-Auth header before any body
/// is read, then <see cref="ApiSignature.Verify(Ferry.Protocol.Handshake.ClusterKey, in ApiSignature.Parsed, string, string, string, ReadOnlySpan{byte})"/>
/// with the authority (Host), method, path and query and body, all of which an unauthenticated
/// client controls. Both answer null (valid) or a reason, and throw for nothing.
/// </summary>
public static class ApiSignatureTarget
{
    /// <summary>The agent's clock in every run (the seeds are signed for it).</summary>
    public static readonly DateTimeOffset Now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>The authority the seeds are signed for.</summary>
    public const string Authority = "127.0.0.1:7100";

    public static readonly FuzzTarget Target = new(
        "api-signature",
        "lines: X-Ferry-Auth header value, authority (Host), method, path and query; the rest after the fourth newline is the body",
        Run);

    public static void Run(byte[] input)
    {
        var (header, authority, method, pathAndQuery, body) = Split(input);
        string? reason = ApiSignature.Parse(header, Now, out ApiSignature.Parsed parsed);
        if (reason is null)
        {
            CheckParsed(header, parsed);
            reason = ApiSignature.Verify(Targets.Key, parsed, authority, method, pathAndQuery, body);
        }
        string? both = ApiSignature.Verify(Targets.Key, header, authority, method, pathAndQuery, body, Now, out string nonce);
        if (both != reason)
        {
            throw new FuzzFinding($"Parse then Verify says '{reason}', Verify alone says '{both}'");
        }
        if (reason is null && nonce != parsed.Nonce)
        {
            throw new FuzzFinding($"a valid signature's nonce came back as '{nonce}', parsed as '{parsed.Nonce}'");
        }
        if (reason is not null && reason.Length == 0)
        {
            throw new FuzzFinding("a signature was refused with an empty reason");
        }
    }

    /// <summary>What Parse promises of a header it lets through to the MAC check.</summary>
    private static void CheckParsed(string header, ApiSignature.Parsed parsed)
    {
        if (parsed.Nonce is not { Length: >= 8 and <= 64 } || parsed.Mac is null || parsed.Time is null)
        {
            throw new FuzzFinding($"'{header}' parsed into nonce '{parsed.Nonce}', time '{parsed.Time}', {parsed.Mac?.Length} MAC bytes");
        }
        if (!long.TryParse(parsed.Time, NumberStyles.None, CultureInfo.InvariantCulture, out long ms)
            || Math.Abs(ms - Now.ToUnixTimeMilliseconds()) > (long)ApiSignature.Skew.TotalMilliseconds)
        {
            throw new FuzzFinding($"'{header}' passed with a time '{parsed.Time}' outside the skew");
        }
    }

    /// <summary>The input's four first lines as text (invalid UTF-8 as U+FFFD) and the rest as bytes.</summary>
    public static (string Header, string Authority, string Method, string PathAndQuery, byte[] Body) Split(byte[] input)
    {
        var parts = new string[4];
        int pos = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            int nl = Array.IndexOf(input, (byte)'\n', pos);
            int end = nl < 0 ? input.Length : nl;
            parts[i] = Encoding.UTF8.GetString(input, pos, end - pos);
            pos = nl < 0 ? input.Length : nl + 1;
        }
        return (parts[0], parts[1], parts[2], parts[3], input[pos..]);
    }

    /// <summary>An input that the agent accepts: a request signed with the key for <see cref="Authority"/> at <see cref="Now"/>.</summary>
    public static byte[] Signed(string method, string pathAndQuery, string body)
    {
        byte[] b = Encoding.UTF8.GetBytes(body);
        string header = ApiSignature.Sign(Targets.Key, Authority, method, pathAndQuery, b, Now);
        return Encoding.UTF8.GetBytes($"{header}\n{Authority}\n{method}\n{pathAndQuery}\n{body}");
    }
}
