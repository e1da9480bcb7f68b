using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ferry.Transport;
using Ferry.Transport.Tls;

namespace Ferry.Tests.Support;

/// <summary>
/// Certificates for the TLS tests, made by the same <see cref="TestAuthority"/> `ferry certs` uses:
/// the cluster's CA, a second CA no host trusts, and host certificates from either.
/// </summary>
internal static class TestCertificates
{
    public static readonly TestAuthority ClusterCa = TestAuthority.Create("Ferry test cluster CA", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(30));

    public static readonly TestAuthority OtherCa = TestAuthority.Create("Some other CA", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(30));

    /// <summary>A host certificate from <paramref name="issuer"/>, valid around now.</summary>
    public static X509Certificate2 Host(TestAuthority issuer, string name) =>
        issuer.Issue(name, [IPAddress.Loopback], TimeSpan.FromDays(1));

    /// <summary>A host certificate from the cluster CA that expired yesterday.</summary>
    public static X509Certificate2 Expired(string name) =>
        ClusterCa.Issue(name, [IPAddress.Loopback], DateTimeOffset.UtcNow.AddDays(-10), DateTimeOffset.UtcNow.AddDays(-1));

    /// <summary>TLS with <paramref name="certificate"/> as this host's, trusting <paramref name="trusted"/> (the cluster CA unless said).</summary>
    public static TlsOptions Tls(X509Certificate2 certificate, TestAuthority? trusted = null) => new()
    {
        Certificate = certificate,
        // What an agent loads from --tls-ca: the CA certificate alone, without its key.
        Authority = X509CertificateLoader.LoadCertificate((trusted ?? ClusterCa).Certificate.RawData),
    };

    /// <summary>The tests' transport (the loopback cluster key) with TLS: this host's certificate from the cluster CA.</summary>
    public static TransportOptions Transport(string host = "test-host") =>
        LoopbackMigration.Transport with { Tls = Tls(Host(ClusterCa, host)) };

    public static TransportOptions Transport(TlsOptions tls) => LoopbackMigration.Transport with { Tls = tls };
}
