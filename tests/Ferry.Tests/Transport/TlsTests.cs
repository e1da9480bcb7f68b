using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Engine.Source;
using Ferry.Protocol;
using Ferry.Protocol.Handshake;
using Ferry.Tests.Support;
using Ferry.Transport;
using Ferry.Transport.Tls;
using Ferry.Vm.Machine;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Transport;

/// <summary>
/// TLS on migration connections: a whole migration runs over it with equal digests, and every
/// peer it must refuse (another CA, an expired certificate, none, plain TCP against TLS and TLS
/// against plain TCP) is refused at connect, at both ends, with a message that says which it was,
/// while the source VM runs on untouched.
/// </summary>
public sealed class TlsTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static TransportOptions Plain => LoopbackMigration.Transport;

    private static TransportOptions Tls(X509Certificate2 certificate, TestAuthority? trusted = null) =>
        TestCertificates.Transport(TestCertificates.Tls(certificate, trusted));

    private static TransportOptions Source => Tls(TestCertificates.Host(TestCertificates.ClusterCa, "src"));

    private static TransportOptions Destination => Tls(TestCertificates.Host(TestCertificates.ClusterCa, "dst"));

    /// <summary>Collects what a <see cref="MigrationServer"/> refused.</summary>
    private sealed class Refusals
    {
        private readonly List<string> _reasons = [];

        public void Add(string remote, string reason)
        {
            lock (_reasons)
            {
                _reasons.Add(reason);
            }
        }

        public string Single()
        {
            Bounded.WaitUntil(() => { lock (_reasons) { return _reasons.Count > 0; } }, TimeSpan.FromSeconds(20), "the destination refused the connection");
            lock (_reasons)
            {
                return Assert.Single(_reasons);
            }
        }
    }

    /// <summary>Connects <paramref name="source"/> to a server with <paramref name="destination"/>; returns what each end said.</summary>
    private static (Exception AtSource, string AtDestination) Refused(TransportOptions source, TransportOptions destination)
    {
        var refusals = new Refusals();
        bool accepted = false;
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), destination, c =>
        {
            accepted = true;
            c.Dispose();
        }, refusals.Add);
        Exception? atSource = Bounded.Catch(() => MigrationConnector.Connect(server.Endpoint, source, CancellationToken.None).Dispose(), Limit, "the connection attempt");
        Assert.NotNull(atSource);
        string atDestination = refusals.Single();
        Assert.False(accepted, "the destination handed a refused connection over");
        return (atSource, atDestination);
    }

    [Fact]
    public void A_tls_pair_is_encrypted_mutually_authenticated_and_carries_bytes_both_ways()
    {
        var (client, server) = LoopbackPair.Open(Source with { Tls = Source.Tls! with { Certificate = TestCertificates.Host(TestCertificates.ClusterCa, "both") } });
        using (client)
        using (server)
        {
            Assert.True(client.Encrypted);
            Assert.True(server.Encrypted);
            var clientTls = Assert.IsType<SslStream>(client.Stream);
            var serverTls = Assert.IsType<SslStream>(server.Stream);
            Assert.Equal(SslProtocols.Tls13, clientTls.SslProtocol);
            Assert.Equal("CN=both", serverTls.RemoteCertificate?.Subject);
            Assert.Equal("CN=both", clientTls.RemoteCertificate?.Subject);
            client.Stream.Write("ping"u8);
            byte[] got = new byte[4];
            server.Stream.ReadExactly(got);
            Assert.Equal("ping"u8.ToArray(), got);
            server.Stream.Write("pong"u8);
            client.Stream.ReadExactly(got);
            Assert.Equal("pong"u8.ToArray(), got);
        }
    }

    [Fact]
    public void The_cluster_key_handshake_still_runs_inside_tls()
    {
        var (atSource, atDestination) = Refused(Source, Destination with { Key = new ClusterKey("another-key-0123456789abcdef"u8) });
        var ex = Assert.IsType<ProtocolException>(atSource);
        Assert.Equal(ProtocolErrorKind.AuthenticationFailed, ex.Kind);
        Assert.Contains("could not prove it holds the cluster key", atDestination);
    }

    [Fact]
    public void A_destination_with_a_certificate_from_another_ca_is_refused_by_the_source()
    {
        var (atSource, atDestination) = Refused(Source, Tls(TestCertificates.Host(TestCertificates.OtherCa, "dst")));
        Assert.IsType<TransportException>(atSource);
        Assert.Contains("refused: the destination's certificate 'CN=dst' (issued by 'CN=Some other CA') does not chain to this host's CA 'CN=Ferry test cluster CA'", atSource.Message);
        Assert.Contains("refused by the source: it closed the connection right after the TLS handshake", atDestination);
        Assert.Contains("'CN=dst'", atDestination);
    }

    [Fact]
    public void A_source_with_a_certificate_from_another_ca_is_refused_by_the_destination()
    {
        var (atSource, atDestination) = Refused(Tls(TestCertificates.Host(TestCertificates.OtherCa, "src")), Destination);
        Assert.StartsWith("TLS from 127.0.0.1:", atDestination);
        Assert.Contains("refused: the source's certificate 'CN=src' (issued by 'CN=Some other CA') does not chain to this host's CA 'CN=Ferry test cluster CA'", atDestination);
        Assert.IsType<TransportException>(atSource);
        Assert.Contains("refused by the destination: it closed the connection right after the TLS handshake", atSource.Message);
        Assert.Contains("does not accept this host's certificate 'CN=src'", atSource.Message);
    }

    [Fact]
    public void A_source_trusting_another_ca_refuses_the_destination()
    {
        // Both certificates come from the cluster CA, but the source was given the wrong --tls-ca.
        var (atSource, atDestination) = Refused(Tls(TestCertificates.Host(TestCertificates.ClusterCa, "src"), trusted: TestCertificates.OtherCa), Destination);
        Assert.Contains("the destination's certificate 'CN=dst' (issued by 'CN=Ferry test cluster CA') does not chain to this host's CA 'CN=Some other CA'", atSource.Message);
        Assert.Contains("refused by the source", atDestination);
    }

    [Fact]
    public void An_expired_source_certificate_is_refused_with_its_end_date()
    {
        X509Certificate2 expired = TestCertificates.Expired("src");
        var (atSource, atDestination) = Refused(Tls(expired), Destination);
        Assert.Contains($"refused: the source's certificate 'CN=src' expired on {expired.NotAfter.ToUniversalTime():u}", atDestination);
        Assert.Contains("refused by the destination", atSource.Message);
    }

    [Fact]
    public void An_expired_destination_certificate_is_refused_with_its_end_date()
    {
        X509Certificate2 expired = TestCertificates.Expired("dst");
        var (atSource, atDestination) = Refused(Source, Tls(expired));
        Assert.Contains($"refused: the destination's certificate 'CN=dst' expired on {expired.NotAfter.ToUniversalTime():u}", atSource.Message);
        Assert.Contains("refused by the source", atDestination);
    }

    [Fact]
    public void A_plain_tcp_source_is_refused_by_a_tls_destination()
    {
        var (atSource, atDestination) = Refused(Plain, Destination);
        Assert.Contains("refused: it did not start TLS (this agent requires TLS", atDestination);
        Assert.IsType<TransportException>(atSource);
        Assert.Contains("it closed the connection without answering the key handshake, as an agent that requires TLS does (this host runs without TLS)", atSource.Message);
    }

    [Fact]
    public void A_tls_source_is_refused_by_a_plain_destination()
    {
        var (atSource, atDestination) = Refused(Source, Plain);
        Assert.Contains("refused: it started TLS, and this agent runs without TLS", atDestination);
        Assert.IsType<TransportException>(atSource);
        Assert.Contains("it closed the connection without answering TLS, as an agent that runs without TLS does (this host requires TLS)", atSource.Message);
    }

    /// <summary>A TLS client with no certificate at all (not something a Ferry agent can be): the mutual check refuses it.</summary>
    private static Exception? ConnectWithoutCertificate(IPEndPoint endpoint)
    {
        return Bounded.Catch(() =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Connect(endpoint);
            using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
            tls.AuthenticateAsClient(new SslClientAuthenticationOptions
            {
                TargetHost = "ferry-migration",
                EnabledSslProtocols = SslProtocols.Tls13,
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            });
            MigrationHandshake.RunClient(tls, LoopbackMigration.Key);
        }, Limit, "a TLS client without a certificate");
    }

    [Fact]
    public void A_source_without_a_certificate_is_refused_when_mutual_tls_is_on()
    {
        Assert.True(Destination.Tls!.RequireClientCertificate, "mutual TLS is the default");
        var refusals = new Refusals();
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), Destination, c => c.Dispose(), refusals.Add);
        Exception? atSource = ConnectWithoutCertificate(server.Endpoint);
        Assert.Contains("refused: the source presented no certificate (this host requires one from its CA 'CN=Ferry test cluster CA')", refusals.Single());
        var closed = Assert.IsType<ProtocolException>(atSource);
        Assert.Equal(ProtocolErrorKind.Truncated, closed.Kind);
    }

    [Fact]
    public void With_mutual_tls_off_a_source_without_a_certificate_gets_through_to_the_key_handshake()
    {
        MigrationConnection? accepted = null;
        TransportOptions destination = Destination with { Tls = Destination.Tls! with { RequireClientCertificate = false } };
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), destination, c => accepted = c, (_, _) => { });
        Assert.Null(ConnectWithoutCertificate(server.Endpoint));
        Bounded.WaitUntil(() => accepted is not null, TimeSpan.FromSeconds(20), "the destination accepted the connection");
        Assert.True(accepted!.Encrypted);
        accepted.Dispose();
    }

    [Fact]
    public void A_silent_tls_source_is_refused_after_the_handshake_timeout()
    {
        var refusals = new Refusals();
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), Destination with { HandshakeTimeout = TimeSpan.FromMilliseconds(300) },
            c => c.Dispose(), refusals.Add);
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        silent.Connect(server.Endpoint);
        Assert.Contains("no handshake within 0.3 s", refusals.Single());
    }

    [Fact]
    public void A_certificate_not_yet_valid_is_refused_with_its_start_date()
    {
        using X509Certificate2 future = TestCertificates.ClusterCa.Issue("later", [IPAddress.Loopback], DateTimeOffset.UtcNow.AddDays(1), DateTimeOffset.UtcNow.AddDays(2));
        string? why = TlsLayer.Check(future, null, SslPolicyErrors.None, Destination.Tls!, "source", required: true);
        Assert.Equal($"the source's certificate 'CN=later' is not valid before {future.NotBefore.ToUniversalTime():u}", why);
    }

    // ---- whole migrations ----

    private const long MigratedOps = 400_000;

    /// <summary>
    /// Ops-limited, so a migrated guest's end state can be compared with a run that never moved. One
    /// vCPU and 5 s of guest work: on a loaded two-core host a TLS migration with 2 vCPUs and 3 s
    /// of work sometimes ended after the guest did.
    /// </summary>
    private static readonly VmConfig MigratedConfig = new()
    {
        Id = "tls",
        MemoryBytes = 32L << 20,
        Vcpus = 1,
        Workload = "memtouch:rate=40000,wss=16MiB,pattern=zipf,content=random,seed=21",
        Fill = RamFill.Random,
        OpsLimitPerVcpu = MigratedOps,
    };

    private static readonly Lazy<ulong> MigratedExpectedDigest = new(() => ReferenceRun.Digest(MigratedConfig));

    private static VirtualMachine StartedMigratedVm()
    {
        var vm = VirtualMachine.Create(MigratedConfig);
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 5_000, TimeSpan.FromSeconds(30), "the guest did some work");
        return vm;
    }

    [Theory]
    [InlineData(MigrationTechnique.PreCopy)]
    [InlineData(MigrationTechnique.PostCopy)]
    public void A_whole_migration_over_tls_ends_with_equal_digests(MigrationTechnique technique)
    {
        ulong expected = MigratedExpectedDigest.Value;
        using VirtualMachine vm = StartedMigratedVm();
        var options = new MigrationOptions
        {
            Technique = technique,
            PreCopy = new PreCopyOptions { MaxRounds = 5 },
            BaselineWindow = TimeSpan.FromMilliseconds(200),
            // Post-copy paced so the guest runs ahead of its pages and asks for some over the TLS link.
            MaxBandwidthBytesPerSecond = technique == MigrationTechnique.PostCopy ? 16L << 20 : 0,
        };
        LoopbackMigration.Outcome outcome = Bounded.Run(() => LoopbackMigration.Run(vm, options, transport: Source), Limit, "a migration over TLS");

        Assert.Null(outcome.DestinationError);
        Assert.True(outcome.Source.Report.Outcome == MigrationOutcome.Completed, outcome.Source.Report.Error);
        Assert.True(outcome.Source.VmMoved);
        Assert.True(outcome.Source.Report.Verification.DigestsMatch);
        Assert.Equal(outcome.Source.Report.Verification.SourceDigest, outcome.Source.Report.Verification.DestinationDigest);
        Assert.True(outcome.Source.Report.Verification.SourceRehashMatches);
        Assert.True(vm.TotalOps < MigratedOps, $"the guest finished before it migrated ({outcome.Source.Report.Timing.TotalMs:0} ms): the test proved nothing");
        using VirtualMachine dest = outcome.Destination!;
        ReferenceRun.AssertFinishesWith(dest, expected);
    }

    [Fact]
    public void A_post_copy_over_tls_reconnects_over_tls_after_a_broken_link()
    {
        ulong expected = MigratedExpectedDigest.Value;
        using VirtualMachine vm = StartedMigratedVm();
        TruncatingStream? first = null;
        var options = new MigrationOptions { Technique = MigrationTechnique.PostCopy, MaxBandwidthBytesPerSecond = 16L << 20 };
        var limits = new DestinationLimits { PostCopyRecovery = new PostCopyRecoveryRegistry(), PageWaitTimeout = TimeSpan.FromSeconds(20) };
        Stream? reconnected = null;
        LoopbackMigration.Outcome outcome = Bounded.Run(() => LoopbackMigration.Run(vm, options, s => first = new TruncatingStream(s, limit: 2L << 20), limits: limits,
            wrapReconnected: s => reconnected = s, transport: Source), Limit, "a post-copy over TLS with a broken link");

        Assert.True(first!.Cut, "the link was never cut: the test proved nothing");
        Assert.IsType<SslStream>(reconnected);
        Assert.Null(outcome.DestinationError);
        Assert.True(outcome.Source.Report.Outcome == MigrationOutcome.Completed, outcome.Source.Report.Error);
        Assert.Equal(1, outcome.Source.Report.PostCopy.Recoveries);
        Assert.True(outcome.Source.Report.Verification.DigestsMatch);
        using VirtualMachine dest = outcome.Destination!;
        ReferenceRun.AssertFinishesWith(dest, expected);
    }

    /// <summary>
    /// One vCPU, rate-limited (it mostly sleeps): five cases each run it to its end, next to other
    /// test classes that measure time. 5 s of work, so that a slow first TLS set-up on a loaded host
    /// still comes before the end.
    /// </summary>
    private static readonly VmConfig RefusedConfig = new()
    {
        Id = "refused",
        MemoryBytes = 16L << 20,
        Vcpus = 1,
        Workload = "memtouch:rate=20000,wss=8MiB,pattern=uniform,content=random,seed=22",
        Fill = RamFill.Random,
        OpsLimitPerVcpu = 160_000,
    };

    private static readonly Lazy<ulong> RefusedExpectedDigest = new(() => ReferenceRun.Digest(RefusedConfig));

    public static TheoryData<string> RefusedPairs => ["destination from another CA", "source from another CA", "expired source", "plain source to TLS", "TLS source to plain"];

    private static (TransportOptions Source, TransportOptions Destination, string RefusedBecause) Pair(string name) => name switch
    {
        "destination from another CA" => (Source, Tls(TestCertificates.Host(TestCertificates.OtherCa, "dst")), "does not chain to this host's CA"),
        "source from another CA" => (Tls(TestCertificates.Host(TestCertificates.OtherCa, "src")), Destination, "refused by the destination"),
        "expired source" => (Tls(TestCertificates.Expired("src")), Destination, "refused by the destination"),
        "plain source to TLS" => (Plain, Destination, "as an agent that requires TLS does"),
        "TLS source to plain" => (Source, Plain, "as an agent that runs without TLS does"),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    /// <summary>
    /// As an agent migrates: connect first (TLS, key handshake), and only on an authenticated
    /// connection start the session that touches the VM. A refusal must stop it before that.
    /// </summary>
    [Theory]
    [MemberData(nameof(RefusedPairs))]
    public void A_refused_migration_leaves_the_source_vm_running_and_untouched(string pair)
    {
        var (source, destination, refusedBecause) = Pair(pair);
        ulong expected = RefusedExpectedDigest.Value;
        using var vm = VirtualMachine.Create(RefusedConfig);
        vm.Start();
        Bounded.WaitUntil(() => vm.TotalOps > 2_000, TimeSpan.FromSeconds(30), "the guest did some work");

        var refusals = new Refusals();
        VirtualMachine? received = null;
        using var server = new MigrationServer(new IPEndPoint(IPAddress.Loopback, 0), destination, c =>
        {
            using (c)
            {
                received = new DestinationMigration(c.Stream, HostIdentity.Local("dest"), new DestinationLimits()).Run(CancellationToken.None);
            }
        }, refusals.Add);
        SourceResult? result = null;
        Exception? error = Bounded.Catch(() =>
        {
            var links = new TcpSourceLinks(server.Endpoint, source);
            MigrationConnection connection = MigrationConnector.Connect(server.Endpoint, source, CancellationToken.None);
            using var log = new SoftwareDirtyLog(vm.Memory);
            result = new SourceMigration("m-refused", vm, links.Adopt(connection), new MigrationOptions { Technique = MigrationTechnique.PreCopy }, log,
                HostIdentity.Local("src"), HostIdentity.Local("dest"), links).Run(CancellationToken.None);
        }, Limit, "a migration to a peer that refuses it");

        Assert.Null(result);
        Assert.IsType<TransportException>(error);
        Assert.Contains(refusedBecause, error.Message);
        Assert.Contains("refused", refusals.Single());
        Assert.Null(received);

        Assert.Equal(VmRunState.Running, vm.State);
        ulong before = vm.TotalOps;
        Assert.False(vm.Finished, "the guest finished before the refusal: the test proved nothing");
        Bounded.WaitUntil(() => vm.TotalOps > before + 200 || vm.Finished, TimeSpan.FromSeconds(20), "the source VM keeps doing work after the refusal");
        // Untouched: run to its end, it leaves exactly the memory of a guest nobody tried to migrate.
        ReferenceRun.AssertFinishesWith(vm, expected);
    }
}
