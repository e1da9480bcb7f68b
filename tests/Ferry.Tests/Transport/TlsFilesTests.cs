using System.Net;
using System.Security.Cryptography.X509Certificates;
using Ferry.Tests.Support;
using Ferry.Transport;
using Ferry.Transport.Tls;

namespace Ferry.Tests.Transport;

/// <summary>
/// PEM files as `ferry certs` writes them and `ferry agent --tls-cert --tls-key --tls-ca` reads them:
/// they load into working TLS, and a wrong file is an error that names it and says what is wrong.
/// </summary>
public sealed class TlsFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ferry-tls-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private (string Certificate, string Key) WriteHost(string name, X509Certificate2? certificate = null)
    {
        using X509Certificate2 host = certificate ?? TestCertificates.Host(TestCertificates.ClusterCa, name);
        return TestAuthority.WriteHost(_dir, name, host);
    }

    [Fact]
    public void Files_written_by_the_test_authority_load_and_carry_a_migration_connection()
    {
        TestCertificates.ClusterCa.WriteAuthority(_dir);
        var (cert, key) = WriteHost("alpha");
        TlsOptions tls = TlsFiles.Load(cert, key, PathOf("ca.pem"));
        Assert.Equal("CN=alpha", tls.Certificate.Subject);
        Assert.True(tls.Certificate.HasPrivateKey);
        Assert.Equal(TestCertificates.ClusterCa.Certificate.Thumbprint, tls.Authority.Thumbprint);
        Assert.True(tls.RequireClientCertificate);

        var (client, server) = LoopbackPair.Open(TestCertificates.Transport(tls));
        using (client)
        using (server)
        {
            Assert.True(client.Encrypted);
            client.Stream.Write("x"u8);
            Assert.Equal((byte)'x', (byte)server.Stream.ReadByte());
        }
    }

    [Fact]
    public void Host_certificates_name_the_host_and_addresses_and_serve_both_ends()
    {
        using X509Certificate2 host = TestCertificates.ClusterCa.Issue("alpha", [IPAddress.Loopback, IPAddress.Parse("198.18.2.3")], TimeSpan.FromDays(3));
        var names = host.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(["alpha"], names.EnumerateDnsNames());
        Assert.Equal([IPAddress.Loopback, IPAddress.Parse("198.18.2.3")], names.EnumerateIPAddresses());
        var usages = host.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value);
        Assert.Equal(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], usages);
        Assert.False(host.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        Assert.True(TestCertificates.ClusterCa.Certificate.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        using var publicKey = host.GetECDsaPublicKey();
        Assert.Equal(256, publicKey?.KeySize);
    }

    [LinuxFact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void Key_files_are_readable_by_their_owner_only()
    {
        TestCertificates.ClusterCa.WriteAuthority(_dir);
        var (cert, key) = WriteHost("alpha");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(PathOf("ca-key.pem")));
        Assert.True(File.GetUnixFileMode(cert).HasFlag(UnixFileMode.OtherRead), "a certificate is public");
    }

    [Fact]
    public void Existing_files_are_never_overwritten()
    {
        TestCertificates.ClusterCa.WriteAuthority(_dir);
        string before = File.ReadAllText(PathOf("ca-key.pem"));
        using var other = TestAuthority.Create("again", TimeSpan.FromDays(1));
        Assert.Throws<IOException>(() => other.WriteAuthority(_dir));
        Assert.Equal(before, File.ReadAllText(PathOf("ca-key.pem")));
    }

    [Fact]
    public void A_key_that_belongs_to_another_certificate_is_an_error_naming_both_files()
    {
        TestCertificates.ClusterCa.WriteAuthority(_dir);
        var (cert, _) = WriteHost("alpha");
        var (_, otherKey) = WriteHost("beta");
        var ex = Assert.Throws<TransportException>(() => TlsFiles.Load(cert, otherKey, PathOf("ca.pem")));
        Assert.StartsWith($"cannot load the TLS certificate '{cert}' with its key '{otherKey}': ", ex.Message);
    }

    [Fact]
    public void A_missing_file_is_an_error_naming_it()
    {
        TestCertificates.ClusterCa.WriteAuthority(_dir);
        var (cert, key) = WriteHost("alpha");
        var noCert = Assert.Throws<TransportException>(() => TlsFiles.Load(PathOf("nope.pem"), key, PathOf("ca.pem")));
        Assert.Contains($"'{PathOf("nope.pem")}'", noCert.Message);
        var noCa = Assert.Throws<TransportException>(() => TlsFiles.Load(cert, key, PathOf("no-ca.pem")));
        Assert.StartsWith($"cannot load the TLS CA '{PathOf("no-ca.pem")}': ", noCa.Message);
    }

    [Fact]
    public void A_host_certificate_given_as_the_ca_is_an_error()
    {
        var (cert, key) = WriteHost("alpha");
        var ex = Assert.Throws<TransportException>(() => TlsFiles.Load(cert, key, cert));
        Assert.Equal($"the TLS CA '{cert}' holds 'CN=alpha', which is not a CA certificate (no basic constraints with CA:TRUE)", ex.Message);
    }

    [Fact]
    public void A_certificate_from_another_ca_than_the_ca_file_is_an_error()
    {
        TestCertificates.ClusterCa.WriteAuthority(_dir);
        var (cert, key) = WriteHost("stray", TestCertificates.Host(TestCertificates.OtherCa, "stray"));
        var ex = Assert.Throws<TransportException>(() => TlsFiles.Load(cert, key, PathOf("ca.pem")));
        Assert.StartsWith($"the TLS certificate '{cert}' ('CN=stray', issued by 'CN=Some other CA') does not chain to the TLS CA '{PathOf("ca.pem")}' ('CN=Ferry test cluster CA'", ex.Message);
    }

    [Fact]
    public void An_expired_own_certificate_is_an_error_at_load_not_at_every_migration()
    {
        TestCertificates.ClusterCa.WriteAuthority(_dir);
        var (cert, key) = WriteHost("old", TestCertificates.Expired("old"));
        var ex = Assert.Throws<TransportException>(() => TlsFiles.Load(cert, key, PathOf("ca.pem")));
        Assert.Contains($"the TLS certificate '{cert}' ('CN=old') is valid only from", ex.Message);
        Assert.EndsWith("every peer would refuse it", ex.Message);
    }
}
