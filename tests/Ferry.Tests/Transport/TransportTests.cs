using System.Net;
using System.Net.Sockets;
using Ferry.Protocol;
using Ferry.Protocol.Handshake;
using Ferry.Tests.Support;
using Ferry.Transport;

namespace Ferry.Tests.Transport;

/// <summary>Ferry.Transport: connections are tuned, authenticated by the cluster key, and refused with a reason otherwise.</summary>
public sealed class TransportTests
{
    private static readonly TransportOptions Options = LoopbackMigration.Transport;

    [Fact]
    public void A_loopback_pair_is_authenticated_and_carries_bytes_both_ways()
    {
        var (client, server) = LoopbackPair.Open(Options);
        using (client)
        using (server)
        {
            client.Stream.Write("ping"u8);
            byte[] got = new byte[4];
            server.Stream.ReadExactly(got);
            Assert.Equal("ping"u8.ToArray(), got);
            server.Stream.Write("pong"u8);
            client.Stream.ReadExactly(got);
            Assert.Equal("pong"u8.ToArray(), got);
            Assert.False(client.Encrypted);
        }
    }

    [LinuxFact]
    public void The_source_connection_caps_unsent_bytes_and_reads_what_tcp_delivered()
    {
        var (client, server) = LoopbackPair.Open(Options);
        using (client)
        using (server)
        {
            Assert.True(client.Socket.NoDelay);
            byte[] value = new byte[4];
            // IPPROTO_TCP, TCP_NOTSENT_LOWAT
            Assert.Equal(4, client.Socket.GetRawSocketOption(6, 25, value));
            Assert.Equal(TransportOptions.DefaultUnsentBytesLimit, BitConverter.ToInt32(value));
            ulong before = client.Delivered()!.Value.BytesAcked;
            client.Stream.Write(new byte[64 << 10]);
            server.Stream.ReadExactly(new byte[64 << 10]);
            Bounded.WaitUntil(() => client.Delivered()!.Value.BytesAcked >= before + (64 << 10), TimeSpan.FromSeconds(10), "TCP acknowledged the bytes");
        }
    }

    [Fact]
    public void A_server_with_another_key_is_refused_at_both_ends()
    {
        var refused = new List<string>();
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), new TransportOptions { Key = new ClusterKey("another-key-0123456789abcdef"u8) },
            c => c.Dispose(), (remote, reason) => { lock (refused) { refused.Add(reason); } });
        var ex = Assert.Throws<ProtocolException>(() => MigrationConnector.Connect(server.Endpoint, Options, CancellationToken.None));
        Assert.Equal(ProtocolErrorKind.AuthenticationFailed, ex.Kind);
        Bounded.WaitUntil(() => { lock (refused) { return refused.Count == 1; } }, TimeSpan.FromSeconds(10), "the server refused it");
        Assert.Contains("could not prove it holds the cluster key", refused[0]);
    }

    [Fact]
    public void A_silent_client_is_refused_after_the_handshake_timeout()
    {
        var refused = new List<string>();
        var options = Options with { HandshakeTimeout = TimeSpan.FromMilliseconds(300) };
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), options, c => c.Dispose(),
            (remote, reason) => { lock (refused) { refused.Add(reason); } });
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        silent.Connect(server.Endpoint);
        Bounded.WaitUntil(() => { lock (refused) { return refused.Count == 1; } }, TimeSpan.FromSeconds(10), "the silent client was refused");
        Assert.Contains("no handshake within", refused[0]);
    }

    [Fact]
    public void A_client_that_drips_one_byte_per_interval_is_refused_at_the_whole_handshake_deadline()
    {
        var refused = new List<string>();
        // Each byte comes well within the per-read limit; only a deadline for the whole handshake ends this.
        var options = Options with { HandshakeTimeout = TimeSpan.FromMilliseconds(600) };
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), options, c => c.Dispose(),
            (remote, reason) => { lock (refused) { refused.Add(reason); } });
        using var drip = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        drip.Connect(server.Endpoint);
        byte[] magic = "FERRYMIG"u8.ToArray();
        int sent = 0;
        try
        {
            for (int i = 0; i < 40 && refused.Count == 0; i++)
            {
                drip.Send(magic.AsSpan(i % magic.Length, 1));
                sent++;
                Thread.Sleep(200);
            }
        }
        catch (SocketException)
        {
            // The server closed on us: the refusal below says why.
        }
        Bounded.WaitUntil(() => { lock (refused) { return refused.Count == 1; } }, TimeSpan.FromSeconds(10), "the dripping client was refused");
        Assert.Contains("no handshake within 0.6 s", refused[0]);
        // Refused long before its 40 drips were through.
        Assert.True(sent < 20, $"{sent} bytes were accepted");
    }

    [Fact]
    public void An_accepted_connection_reaches_the_server_handler_authenticated()
    {
        MigrationConnection? got = null;
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), Options, c => got = c, (_, _) => { });
        using MigrationConnection client = MigrationConnector.Connect(server.Endpoint, Options, CancellationToken.None);
        Bounded.WaitUntil(() => got is not null, TimeSpan.FromSeconds(10), "the server handed the connection over");
        client.Stream.Write("x"u8);
        Assert.Equal((byte)'x', (byte)got!.Stream.ReadByte());
        got.Dispose();
    }

    [Fact]
    public void Nothing_listening_is_a_clear_error()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var endpoint = (IPEndPoint)probe.LocalEndPoint!;
        var ex = Assert.Throws<TransportException>(() => MigrationConnector.Connect(endpoint, Options, CancellationToken.None));
        Assert.Contains($"cannot connect to {endpoint}", ex.Message);
    }
}
