using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using CsCheck;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Handshake;
using Ferry.Tests.Support;

namespace Ferry.Tests.Protocol;

/// <summary>
/// The mutual key proof over real loopback sockets. Every blocking read is bounded twice: the
/// sockets time out after <see cref="SocketTimeout"/> and each side runs under <see cref="Bounded"/>.
/// </summary>
public sealed class HandshakeTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);
    private const int SocketTimeout = 10_000;
    private static readonly ClusterKey Key = LoopbackMigration.Key;
    private static readonly ClusterKey OtherKey = new("another-cluster-key-fedcba987654"u8);

    private sealed class Link : IDisposable
    {
        public Link()
        {
            var (client, server) = LoopbackMigration.ConnectedPair();
            client.ReceiveTimeout = server.ReceiveTimeout = SocketTimeout;
            client.SendTimeout = server.SendTimeout = SocketTimeout;
            ClientSocket = client;
            Client = new NetworkStream(client, ownsSocket: true);
            Server = new NetworkStream(server, ownsSocket: true);
        }

        public Socket ClientSocket { get; }

        public NetworkStream Client { get; }

        public NetworkStream Server { get; }

        public void Dispose()
        {
            Client.Dispose();
            Server.Dispose();
        }
    }

    /// <summary>Runs the server side on its own thread; returns what it threw (null on success).</summary>
    private static Task<Exception?> StartServer(Stream stream, ClusterKey key) =>
        Task.Factory.StartNew(() =>
        {
            try
            {
                MigrationHandshake.RunServer(stream, key);
                return (Exception?)null;
            }
            catch (Exception ex)
            {
                return ex;
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static Exception? Await(Task<Exception?> side, string what)
    {
        Assert.True(side.Wait(Limit), $"{what} did not finish within {Limit.TotalSeconds:0} s");
        return side.Result;
    }

    private static ProtocolException AssertProtocolError(Exception? ex, ProtocolErrorKind kind)
    {
        Assert.NotNull(ex);
        var pe = Assert.IsType<ProtocolException>(ex);
        Assert.True(pe.Kind == kind, $"expected {kind}, got {pe.Kind}: {pe.Message}");
        return pe;
    }

    private static void ReadExactly(Stream s, Span<byte> target)
    {
        int got = 0;
        while (got < target.Length)
        {
            int n = s.Read(target[got..]);
            Assert.True(n > 0, $"peer closed after {got} of {target.Length} bytes");
            got += n;
        }
    }

    [Fact]
    public void Same_key_on_both_sides_succeeds_and_frames_flow_afterwards()
    {
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        Exception? client = Bounded.Catch(() => MigrationHandshake.RunClient(link.Client, Key), Limit, "client handshake");
        Assert.Null(client);
        Assert.Null(Await(server, "server handshake"));

        // The handshake consumed exactly its own bytes: frames start at a frame boundary both ways.
        new FrameWriter(link.Client).Write(FrameType.Commit, []);
        new FrameWriter(link.Server).Write(FrameType.Resumed, "{}"u8);
        var atServer = Bounded.Run(() => new FrameReader(link.Server).Read().Type, Limit, "server frame read");
        Assert.Equal(FrameType.Commit, atServer);
        var atClient = Bounded.Run(() => new FrameReader(link.Client).Read().Type, Limit, "client frame read");
        Assert.Equal(FrameType.Resumed, atClient);
    }

    [Fact]
    public void Wrong_key_fails_authentication_on_both_sides()
    {
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        Exception? client = Bounded.Catch(() => MigrationHandshake.RunClient(link.Client, OtherKey), Limit, "client handshake");
        // A real client drops the connection once the handshake failed.
        link.Client.Dispose();
        ProtocolException c = AssertProtocolError(client, ProtocolErrorKind.AuthenticationFailed);
        Assert.Contains("could not prove it holds the cluster key", c.Message);
        ProtocolException s = AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.AuthenticationFailed);
        Assert.Contains("client could not prove it holds the cluster key", s.Message);
    }

    [Fact]
    public void Wrong_key_fails_on_the_server_even_while_the_client_keeps_the_connection_open()
    {
        // The server must not sit waiting for a proof that will never come.
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        Exception? client = Bounded.Catch(() => MigrationHandshake.RunClient(link.Client, OtherKey), Limit, "client handshake");
        AssertProtocolError(client, ProtocolErrorKind.AuthenticationFailed);
        AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.AuthenticationFailed);
    }

    [Fact]
    public void Client_sending_random_bytes_is_rejected_for_bad_magic()
    {
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        byte[] junk = RandomNumberGenerator.GetBytes(ClientHelloSizeForTest);
        junk[0] = (byte)'X';
        link.Client.Write(junk);
        ProtocolException ex = AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.BadMagic);
        Assert.Contains("not a Ferry migration source", ex.Message);
    }

    private const int ClientHelloSizeForTest = MigrationHandshake.ClientHelloSize;

    [Fact]
    public void Client_speaking_another_protocol_is_rejected_without_waiting_for_a_full_hello()
    {
        // An HTTP client sends its short request and then waits for an answer; the server must
        // see from the first 8 bytes that this is not Ferry rather than wait for 48.
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        link.Client.Write("GET / HTTP/1.0\r\n\r\n"u8);
        AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.BadMagic);
    }

    [Fact]
    public void Client_that_connects_and_closes_is_truncated()
    {
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        link.Client.Dispose();
        ProtocolException ex = AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.Truncated);
        Assert.Equal("connection closed during the handshake (client hello: 0 of 48 bytes)", ex.Message);
    }

    [Fact]
    public void Client_that_closes_after_its_hello_is_truncated()
    {
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        byte[] hello = new byte[MigrationHandshake.ClientHelloSize];
        "FERRYMIG"u8.CopyTo(hello);
        BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(8), ProtocolVersion.Current);
        link.Client.Write(hello);
        byte[] reply = new byte[MigrationHandshake.ServerHelloSize];
        ReadExactly(link.Client, reply);
        link.Client.Dispose();
        ProtocolException ex = AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.Truncated);
        Assert.Contains("client key proof: 0 of 32 bytes", ex.Message);
    }

    [Fact]
    public void Server_that_is_not_ferry_is_rejected_for_bad_magic()
    {
        // An HTTP server answers the unknown request with a short error and closes.
        using var link = new Link();
        Task<Exception?> fake = Task.Factory.StartNew(() =>
        {
            byte[] hello = new byte[MigrationHandshake.ClientHelloSize];
            ReadExactly(link.Server, hello);
            link.Server.Write("HTTP/1.1 400 Bad Request\r\n\r\n"u8);
            link.Server.Dispose();
            return (Exception?)null;
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Exception? client = Bounded.Catch(() => MigrationHandshake.RunClient(link.Client, Key), Limit, "client handshake");
        ProtocolException ex = AssertProtocolError(client, ProtocolErrorKind.BadMagic);
        Assert.Contains("not a Ferry migration endpoint", ex.Message);
        Assert.Null(Await(fake, "fake server"));
    }

    [Fact]
    public void Server_that_greets_first_and_waits_is_rejected_without_waiting_for_a_full_hello()
    {
        // An SSH server sends its banner and then waits for the client's.
        using var link = new Link();
        link.Server.Write("SSH-2.0-OpenSSH_9.6\r\n"u8);
        Exception? client = Bounded.Catch(() => MigrationHandshake.RunClient(link.Client, Key), Limit, "client handshake");
        AssertProtocolError(client, ProtocolErrorKind.BadMagic);
    }

    [Fact]
    public void Server_that_closes_at_once_is_truncated()
    {
        using var link = new Link();
        link.Server.Dispose();
        Exception? client = Bounded.Catch(() => MigrationHandshake.RunClient(link.Client, Key), Limit, "client handshake");
        ProtocolException ex = AssertProtocolError(client, ProtocolErrorKind.Truncated);
        Assert.Contains("server hello: 0 of 80 bytes", ex.Message);
    }

    [Fact]
    public void Client_with_a_newer_version_is_told_and_refused()
    {
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        byte[] hello = new byte[MigrationHandshake.ClientHelloSize];
        "FERRYMIG"u8.CopyTo(hello);
        BinaryPrimitives.WriteUInt16LittleEndian(hello.AsSpan(8), 2);
        link.Client.Write(hello);
        byte[] reply = new byte[MigrationHandshake.ServerHelloSize];
        Bounded.Do(() => ReadExactly(link.Client, reply), Limit, "server hello");
        Assert.Equal("FERRYACK"u8.ToArray(), reply[..8]);
        Assert.Equal(ProtocolVersion.Current, BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(8)));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(10))); // status: version unsupported
        Assert.All(reply[48..], b => Assert.Equal(0, b));                        // no proof offered
        ProtocolException ex = AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.UnsupportedVersion);
        Assert.Contains("client speaks protocol version 2", ex.Message);
    }

    [Fact]
    public void Server_with_another_version_is_refused_by_the_client()
    {
        using var link = new Link();
        Task<Exception?> fake = Task.Factory.StartNew(() =>
        {
            byte[] hello = new byte[MigrationHandshake.ClientHelloSize];
            ReadExactly(link.Server, hello);
            byte[] reply = new byte[MigrationHandshake.ServerHelloSize];
            "FERRYACK"u8.CopyTo(reply);
            BinaryPrimitives.WriteUInt16LittleEndian(reply.AsSpan(8), 2);
            link.Server.Write(reply);
            return (Exception?)null;
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Exception? client = Bounded.Catch(() => MigrationHandshake.RunClient(link.Client, Key), Limit, "client handshake");
        ProtocolException ex = AssertProtocolError(client, ProtocolErrorKind.UnsupportedVersion);
        Assert.Contains("it offered 2", ex.Message);
        Assert.Null(Await(fake, "fake server"));
    }

    private static byte[] Transcript(string label, byte[] nonceC, byte[] nonceS) =>
        [.. Encoding.ASCII.GetBytes(label), .. nonceC, .. nonceS];

    private static byte[] KeyBytes => "test-cluster-key-0123456789abcdef"u8.ToArray();

    [Fact]
    public void Wire_layout_and_transcripts_are_as_documented()
    {
        // A hand-written client: pins the byte layout and the HMAC transcripts of docs/protocol.md.
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        byte[] nonceC = RandomNumberGenerator.GetBytes(32);
        byte[] hello = [.. "FERRYMIG"u8, 0x01, 0x00, 0, 0, 0, 0, 0, 0, .. nonceC];
        Assert.Equal(MigrationHandshake.ClientHelloSize, hello.Length);
        link.Client.Write(hello);

        byte[] reply = new byte[MigrationHandshake.ServerHelloSize];
        Bounded.Do(() => ReadExactly(link.Client, reply), Limit, "server hello");
        Assert.Equal("FERRYACK"u8.ToArray(), reply[..8]);
        Assert.Equal(new byte[] { 0x01, 0x00, 0x00, 0x00, 0, 0, 0, 0 }, reply[8..16]); // version 1, status 0, reserved
        byte[] nonceS = reply[16..48];
        Assert.Equal(HMACSHA256.HashData(KeyBytes, Transcript("ferry/1 server", nonceC, nonceS)), reply[48..80]);

        // The client's proof carries another label, so the server's proof cannot be reflected back.
        byte[] proof = HMACSHA256.HashData(KeyBytes, Transcript("ferry/1 client", nonceC, nonceS));
        Assert.NotEqual(reply[48..80], proof);
        link.Client.Write(proof);
        byte[] verdict = new byte[MigrationHandshake.VerdictSize];
        Bounded.Do(() => ReadExactly(link.Client, verdict), Limit, "verdict");
        Assert.Equal("FERRY-OK"u8.ToArray(), verdict);
        Assert.Null(Await(server, "server handshake"));
    }

    [Fact]
    public void Reflected_server_proof_is_refused()
    {
        using var link = new Link();
        Task<Exception?> server = StartServer(link.Server, Key);
        byte[] hello = [.. "FERRYMIG"u8, 0x01, 0x00, 0, 0, 0, 0, 0, 0, .. RandomNumberGenerator.GetBytes(32)];
        link.Client.Write(hello);
        byte[] reply = new byte[MigrationHandshake.ServerHelloSize];
        Bounded.Do(() => ReadExactly(link.Client, reply), Limit, "server hello");
        link.Client.Write(reply.AsSpan(48, 32)); // the server's own MAC sent back as the client's proof
        byte[] verdict = new byte[MigrationHandshake.VerdictSize];
        Bounded.Do(() => ReadExactly(link.Client, verdict), Limit, "verdict");
        Assert.Equal("FERRY-NO"u8.ToArray(), verdict);
        AssertProtocolError(Await(server, "server handshake"), ProtocolErrorKind.AuthenticationFailed);
    }

    [Fact]
    public void Server_fed_random_bytes_only_ever_raises_protocol_exceptions()
    {
        Bounded.Do(() => Gen.Byte.Array[0, 120].Sample(bytes =>
        {
            var stream = new ScriptedStream(bytes);
            var ex = Record.Exception(() => MigrationHandshake.RunServer(stream, Key));
            var pe = Assert.IsType<ProtocolException>(ex);
            Assert.True(pe.Kind is ProtocolErrorKind.BadMagic or ProtocolErrorKind.Truncated, $"{pe.Kind}: {pe.Message}");
        }, iter: 500), Limit, "server fuzz");
    }

    [Fact]
    public void Client_fed_random_bytes_only_ever_raises_protocol_exceptions()
    {
        Bounded.Do(() => Gen.Byte.Array[0, 120].Sample(bytes =>
        {
            var stream = new ScriptedStream(bytes);
            var ex = Record.Exception(() => MigrationHandshake.RunClient(stream, Key));
            var pe = Assert.IsType<ProtocolException>(ex);
            Assert.True(pe.Kind is ProtocolErrorKind.BadMagic or ProtocolErrorKind.Truncated, $"{pe.Kind}: {pe.Message}");
        }, iter: 500), Limit, "client fuzz");
    }

    [Fact]
    public void Cluster_key_must_be_long_enough()
    {
        var ex = Assert.Throws<ArgumentException>(() => new ClusterKey("short"u8));
        Assert.Contains("at least 16 bytes", ex.Message);
        Assert.Equal(64, ClusterKey.Generate().Length);
        Assert.NotEqual(ClusterKey.Generate(), ClusterKey.Generate());
    }
}
