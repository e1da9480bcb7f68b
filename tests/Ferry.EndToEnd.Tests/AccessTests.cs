using Ferry.Agent.Migrations;
using System.Net;
using System.Net.Sockets;
using Ferry.Agent.Api;
using Ferry.Agent.Client;
using Ferry.Protocol.Handshake;

namespace Ferry.EndToEnd.Tests;

/// <summary>Without the cluster key nothing is accepted, and each refusal is logged.</summary>
public sealed class AccessTests
{
    [Fact]
    public async Task Api_requests_without_or_with_a_wrong_key_are_refused_and_logged()
    {
        using var key = new KeyFile();
        using var agent = AgentProcess.Start(key);
        using var http = new HttpClient { BaseAddress = agent.Api };

        HttpResponseMessage unsigned = await http.PostAsync("/v1/vms", new StringContent("{\"memory\":\"1MiB\"}", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Unauthorized, unsigned.StatusCode);

        using var wrong = new AgentClient(agent.Api, new ClusterKey("a-different-cluster-key-000000"u8));
        var ex = await Assert.ThrowsAsync<AgentApiException>(() => wrong.CreateVmAsync(new CreateVmRequest { Memory = "1MiB" }, default));
        Assert.Equal(HttpStatusCode.Unauthorized, ex.Status);
        Assert.Contains("cluster key", ex.Message);

        Assert.Empty(await agent.Client.ListVmsAsync(default));
        await Wait.UntilAsync(() => Task.FromResult(agent.Log), l => l.Split("Refused API request").Length >= 3, TimeSpan.FromSeconds(10), "two refusals in the agent log");
    }

    [Fact]
    public async Task Random_bytes_and_a_wrong_key_on_the_migration_port_are_refused_and_the_agent_carries_on()
    {
        using var key = new KeyFile();
        using var agent = AgentProcess.Start(key);
        AgentInfo info = await agent.Client.InfoAsync(default);
        var endpoint = IPEndPoint.Parse(info.MigrationEndpoint);

        using (var garbage = new TcpClient())
        {
            await garbage.ConnectAsync(endpoint);
            byte[] junk = new byte[4096];
            new Random(42).NextBytes(junk);
            await garbage.GetStream().WriteAsync(junk);
            // The agent closes on us; reading then returns 0 or fails.
            var buf = new byte[256];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            try
            {
                while (await garbage.GetStream().ReadAsync(buf, cts.Token) > 0)
                {
                }
            }
            catch (IOException)
            {
                // Reset by the agent: also a refusal.
            }
        }

        using (var impostor = new TcpClient())
        {
            await impostor.ConnectAsync(endpoint);
            var pe = Assert.Throws<Ferry.Protocol.ProtocolException>(() =>
                MigrationHandshake.RunClient(impostor.GetStream(), new ClusterKey("not-the-cluster-key-at-all-000"u8)));
            Assert.Equal(Ferry.Protocol.ProtocolErrorKind.AuthenticationFailed, pe.Kind);
        }

        var incoming = await Wait.UntilAsync(() => agent.Client.ListIncomingAsync(default), l => l.Length == 2 && l.All(i => i.State == IncomingState.Refused), TimeSpan.FromSeconds(30), "both connections refused");
        Assert.Contains(incoming, i => i.Error!.Contains("magic", StringComparison.OrdinalIgnoreCase));
        Assert.Empty(await agent.Client.ListVmsAsync(default));
        Assert.False(agent.HasExited);
        await Wait.UntilAsync(() => Task.FromResult(agent.Log), l => l.Split("Refused migration connection").Length >= 3, TimeSpan.FromSeconds(10), "two refusals in the agent log");
    }
}
