using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Ferry.Agent.Api;
using Ferry.EndToEnd.Tests;

namespace Ferry.Faults.Tests;

/// <summary>Clients without the key, or with a request signed for another agent: refused, without costing the agent memory.</summary>
public sealed class StrangerTests
{
    /// <summary>A chunked POST of <paramref name="bytes"/> over a raw socket; returns the status line (or null when the agent closed first).</summary>
    private static async Task<string?> ChunkedPost(Uri api, long bytes, string? auth, CancellationToken ct)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(api.Host, api.Port, ct);
        NetworkStream s = tcp.GetStream();
        string head = $"POST /v1/vms HTTP/1.1\r\nHost: {api.Authority}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n" +
            (auth is null ? "" : $"X-Ferry-Auth: {auth}\r\n") + "\r\n";
        await s.WriteAsync(Encoding.ASCII.GetBytes(head), ct);
        byte[] chunk = new byte[64 << 10];
        Array.Fill(chunk, (byte)' ');
        byte[] chunkHead = Encoding.ASCII.GetBytes(chunk.Length.ToString("x", CultureInfo.InvariantCulture) + "\r\n");
        try
        {
            for (long sent = 0; sent < bytes; sent += chunk.Length)
            {
                await s.WriteAsync(chunkHead, ct);
                await s.WriteAsync(chunk, ct);
                await s.WriteAsync("\r\n"u8.ToArray(), ct);
            }
            await s.WriteAsync("0\r\n\r\n"u8.ToArray(), ct);
        }
        catch (IOException)
        {
            // The agent answered and closed before the body was through: what we want.
        }
        var buf = new byte[512];
        int n;
        try
        {
            n = await s.ReadAsync(buf, ct);
        }
        catch (IOException)
        {
            return null;
        }
        return n == 0 ? null : Encoding.ASCII.GetString(buf, 0, n).Split("\r\n")[0];
    }

    [Fact]
    public async Task Unsigned_chunked_bodies_are_refused_before_they_are_read_and_the_agent_does_not_grow()
    {
        using var key = new KeyFile();
        using var agent = AgentProcess.Start(key);
        await agent.Client.InfoAsync(default);
        long before = Signals.ResidentBytes(agent.Pid);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        // 40 strangers at once, 27 MiB each: 1 GiB offered in all (before: 2.7 GB kept).
        string?[] answers = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => ChunkedPost(agent.Api, 27L << 20, null, cts.Token)));
        Assert.All(answers, a => Assert.True(a is null || a.Contains("401"), $"answer: {a}"));
        Assert.Contains(answers, a => a is not null);
        long after = Signals.ResidentBytes(agent.Pid);
        Assert.True(after - before < 200L << 20, $"agent grew from {before >> 20} to {after >> 20} MiB");
        Assert.False(agent.HasExited);
    }

    [Fact]
    public async Task A_signed_chunked_body_over_the_limit_gets_413_and_nothing_is_created()
    {
        using var key = new KeyFile();
        using var agent = AgentProcess.Start(key);
        // Signed for an empty body: the agent must stop reading at the limit whatever the signature says.
        string auth = ApiSignature.Sign(key.Key, agent.Api.Authority, "POST", "/v1/vms", [], DateTimeOffset.UtcNow);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        string? answer = await ChunkedPost(agent.Api, 4L << 20, auth, cts.Token);
        Assert.True(answer is null || answer.Contains("413"), $"answer: {answer}");
        Assert.Empty(await agent.Client.ListVmsAsync(default));
    }

    [Fact]
    public async Task A_request_signed_for_one_agent_is_refused_by_another_and_logged()
    {
        using var key = new KeyFile();
        using var a = AgentProcess.Start(key);
        using var b = AgentProcess.Start(key);
        await b.Client.CreateVmAsync(new CreateVmRequest { Id = "target", Memory = "4MiB" }, default);
        string path = "/v1/vms/target";
        string signedForA = ApiSignature.Sign(key.Key, a.Api.Authority, "DELETE", path, [], DateTimeOffset.UtcNow);
        using var http = new HttpClient();
        // Replayed to B as it was (naming A), and with B's name in the Host header: both refused.
        foreach (string host in new[] { a.Api.Authority, b.Api.Authority })
        {
            using var req = new HttpRequestMessage(HttpMethod.Delete, new Uri(b.Api, path));
            req.Headers.Host = host;
            req.Headers.TryAddWithoutValidation(ApiSignature.Header, signedForA);
            using HttpResponseMessage res = await http.SendAsync(req);
            Assert.Equal(HttpStatusCode.Unauthorized, res.StatusCode);
        }
        Assert.Single(await b.Client.ListVmsAsync(default));
        await Wait.UntilAsync(() => Task.FromResult(b.Log), l => l.Contains("not this agent") || l.Contains("another agent"), TimeSpan.FromSeconds(10), "the refusal in B's log");
    }

    [Fact]
    public async Task A_timestamp_far_in_the_future_is_a_logged_401_not_a_500()
    {
        using var key = new KeyFile();
        using var agent = AgentProcess.Start(key);
        using var http = new HttpClient();
        using var req = new HttpRequestMessage(HttpMethod.Get, new Uri(agent.Api, "/v1/vms"));
        req.Headers.TryAddWithoutValidation(ApiSignature.Header, "t=1000000000000000,n=0123456789abcdef,s=00");
        using HttpResponseMessage res = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.Unauthorized, res.StatusCode);
        Assert.Contains("timestamp", await res.Content.ReadAsStringAsync());
        await Wait.UntilAsync(() => Task.FromResult(agent.Log), l => l.Contains("Refused API request GET /v1/vms"), TimeSpan.FromSeconds(10), "the refusal in the log");
        Assert.DoesNotContain("Unhandled", agent.Log);
    }

    [Fact]
    public async Task Malformed_JSON_from_a_signed_client_gets_the_documented_error_body()
    {
        using var key = new KeyFile();
        using var agent = AgentProcess.Start(key);
        byte[] body = "{\"memory\": 12,,}"u8.ToArray();
        string auth = ApiSignature.Sign(key.Key, agent.Api.Authority, "POST", "/v1/vms", body, DateTimeOffset.UtcNow);
        using var http = new HttpClient();
        using var req = new HttpRequestMessage(HttpMethod.Post, new Uri(agent.Api, "/v1/vms")) { Content = new ByteArrayContent(body) };
        req.Content.Headers.ContentType = new("application/json");
        req.Headers.TryAddWithoutValidation(ApiSignature.Header, auth);
        using HttpResponseMessage res = await http.SendAsync(req);
        Assert.Equal(HttpStatusCode.BadRequest, res.StatusCode);
        var error = System.Text.Json.JsonSerializer.Deserialize<ErrorBody>(await res.Content.ReadAsStringAsync(), AgentJson.Options);
        Assert.Contains("not valid JSON", error!.Error);
    }
}
