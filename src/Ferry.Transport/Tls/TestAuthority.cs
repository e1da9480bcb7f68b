using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Ferry.Transport.Tls;

/// <summary>
/// A throwaway CA that issues host certificates for migration TLS: for `ferry certs`,
/// `ferry migrate --tls` and the tests. ECDSA P-256 throughout; host certificates carry both
/// serverAuth and clientAuth, since every agent is a TLS server for its incoming migrations and a
/// TLS client for its outgoing ones, with the one certificate.
/// </summary>
public sealed class TestAuthority : IDisposable
{
    /// <summary>
    /// How far back certificates start by default: a peer whose clock runs a little behind would
    /// otherwise refuse a certificate made a moment ago as "not valid before".
    /// </summary>
    public static readonly TimeSpan ClockSkewAllowance = TimeSpan.FromMinutes(5);

    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1", "Server Authentication");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2", "Client Authentication");

    private readonly ECDsa _key;

    private TestAuthority(X509Certificate2 certificate, ECDsa key)
    {
        Certificate = certificate;
        _key = key;
    }

    /// <summary>The CA certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>A new self-signed CA valid from <paramref name="notBefore"/> to <paramref name="notAfter"/>.</summary>
    public static TestAuthority Create(string name, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        try
        {
            var request = new CertificateRequest(new X500DistinguishedName("CN=" + name), key, HashAlgorithmName.SHA256);
            // pathLength 0: this CA signs host certificates only, never another CA.
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
            return new TestAuthority(request.CreateSelfSigned(notBefore, notAfter), key);
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    /// <summary>A new CA valid for <paramref name="validity"/> from now (less the clock-skew allowance).</summary>
    public static TestAuthority Create(string name, TimeSpan validity)
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        return Create(name, now - ClockSkewAllowance, now + validity);
    }

    /// <summary>
    /// A host certificate (with its private key) for <paramref name="hostName"/>, naming it and
    /// <paramref name="addresses"/> as subject alternative names. Ferry checks only the chain and
    /// the validity (agents dial addresses, and peers are known by their CA), but the names make the
    /// certificate usable by ordinary TLS tools too.
    /// </summary>
    public X509Certificate2 Issue(string hostName, IEnumerable<IPAddress> addresses, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName("CN=" + hostName), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ServerAuth, ClientAuth], critical: false));
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName(hostName);
        foreach (IPAddress address in addresses)
        {
            names.AddIpAddress(address);
        }
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        // Random, positive serial numbers: two certificates from one CA must never share one.
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using X509Certificate2 issued = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key), notBefore, notAfter, serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>A host certificate valid for <paramref name="validity"/> from now (less the clock-skew allowance), capped at the CA's own end.</summary>
    public X509Certificate2 Issue(string hostName, IEnumerable<IPAddress> addresses, TimeSpan validity)
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        DateTimeOffset notAfter = now + validity;
        DateTimeOffset caEnd = new DateTimeOffset(Certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        return Issue(hostName, addresses, now - ClockSkewAllowance, notAfter < caEnd ? notAfter : caEnd);
    }

    /// <summary>
    /// Writes the CA as <c>ca.pem</c> and <c>ca-key.pem</c> in <paramref name="directory"/>; see
    /// <see cref="WriteHost"/> for host files. Key files are created readable by the owner only.
    /// </summary>
    public void WriteAuthority(string directory)
    {
        WritePem(Path.Combine(directory, "ca.pem"), Certificate.ExportCertificatePem(), secret: false);
        WritePem(Path.Combine(directory, "ca-key.pem"), _key.ExportPkcs8PrivateKeyPem(), secret: true);
    }

    /// <summary>Writes <paramref name="host"/>'s certificate as <c>NAME.pem</c> and its key as <c>NAME-key.pem</c>; returns (certificate path, key path).</summary>
    public static (string Certificate, string Key) WriteHost(string directory, string name, X509Certificate2 host)
    {
        using ECDsa key = host.GetECDsaPrivateKey() ?? throw new ArgumentException($"the certificate for '{name}' carries no ECDSA private key", nameof(host));
        string certificatePath = Path.Combine(directory, name + ".pem");
        string keyPath = Path.Combine(directory, name + "-key.pem");
        WritePem(certificatePath, host.ExportCertificatePem(), secret: false);
        WritePem(keyPath, key.ExportPkcs8PrivateKeyPem(), secret: true);
        return (certificatePath, keyPath);
    }

    /// <summary>
    /// Creates the file new (never over an existing one); a secret is created with mode 0600, so
    /// there is no moment at which another user could read it.
    /// </summary>
    private static void WritePem(string path, string pem, bool secret)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = secret
                ? UnixFileMode.UserRead | UnixFileMode.UserWrite
                : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        }
        using var writer = new StreamWriter(path, System.Text.Encoding.ASCII, options);
        writer.Write(pem);
    }

    public void Dispose()
    {
        Certificate.Dispose();
        _key.Dispose();
    }
}
