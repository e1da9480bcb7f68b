using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Ferry.Transport.Tls;

/// <summary>
/// TLS around a migration connection (SslStream). Peers are known by the CA that signed them, not by
/// host name (agents dial addresses), so a certificate is accepted when it chains to the configured
/// CA alone, is within its validity, and — at the server, by default — is presented at all.
/// Failures say which of these it was.
/// </summary>
internal static class TlsLayer
{
    /// <summary>The first byte of every TLS record that opens a handshake.</summary>
    public const byte HandshakeRecord = 0x16;

    public static SslStream Client(Stream inner, TlsOptions tls, string remote)
    {
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        string? rejected = null;
        try
        {
            ssl.AuthenticateAsClient(new SslClientAuthenticationOptions
            {
                TargetHost = "ferry-migration",
                ClientCertificates = [tls.Certificate],
                EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, cert, _, errors) => (rejected = Check(cert, errors, tls, "destination", required: true)) is null,
            });
            return ssl;
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException)
        {
            ssl.Dispose();
            throw new TransportException(rejected is not null
                ? $"TLS with {remote} refused: {rejected}"
                : $"TLS handshake with {remote} failed: {Describe(ex)} (is the destination running with TLS, and does it trust this host's CA?)", ex);
        }
    }

    public static SslStream Server(Stream inner, TlsOptions tls, string remote)
    {
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        string? rejected = null;
        try
        {
            ssl.AuthenticateAsServer(new SslServerAuthenticationOptions
            {
                ServerCertificate = tls.Certificate,
                ClientCertificateRequired = tls.RequireClientCertificate,
                EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, cert, _, errors) =>
                    (rejected = Check(cert, errors, tls, "source", tls.RequireClientCertificate)) is null,
            });
            return ssl;
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException)
        {
            ssl.Dispose();
            throw new TransportException(rejected is not null
                ? $"TLS from {remote} refused: {rejected}"
                : $"TLS handshake from {remote} failed: {Describe(ex)}", ex);
        }
    }

    /// <summary>Null when <paramref name="presented"/> is acceptable; otherwise why not, in words.</summary>
    internal static string? Check(X509Certificate? presented, SslPolicyErrors errors, TlsOptions tls, string peer, bool required)
    {
        if (presented is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            return required ? $"the {peer} presented no certificate" : null;
        }
        using var cert = X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        DateTime now = DateTime.Now;
        if (now > cert.NotAfter)
        {
            return $"the {peer}'s certificate '{cert.Subject}' expired on {cert.NotAfter:u}";
        }
        if (now < cert.NotBefore)
        {
            return $"the {peer}'s certificate '{cert.Subject}' is not valid before {cert.NotBefore:u}";
        }
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(tls.Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (!chain.Build(cert))
        {
            string status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()).Distinct());
            return $"the {peer}'s certificate '{cert.Subject}' (issued by '{cert.Issuer}') does not chain to this host's CA '{tls.Authority.Subject}' ({status})";
        }
        return null;
    }

    private static string Describe(Exception ex) => ex.InnerException is { } inner && inner.Message != ex.Message ? $"{ex.Message} ({inner.Message})" : ex.Message;
}
