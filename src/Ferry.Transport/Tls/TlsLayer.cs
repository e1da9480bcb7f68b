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
/// <remarks>
/// In TLS 1.3 each side checks the other's certificate only once its own part of the handshake is
/// done, so the side whose certificate is refused sees its handshake succeed and then the
/// connection close before the first byte of the key handshake. <see cref="MigrationConnector"/>
/// words that case (<see cref="RefusedOurCertificate"/>); the refusing side logs the exact reason.
/// </remarks>
internal static class TlsLayer
{
    /// <summary>The first byte of every TLS record that opens a handshake.</summary>
    public const byte HandshakeRecord = 0x16;

    private const SslProtocols Protocols = SslProtocols.Tls13 | SslProtocols.Tls12;

    public static SslStream Client(Stream inner, TlsOptions tls, string remote)
    {
        // Counts what the destination sent, to tell "it never answered TLS" from a failed TLS exchange.
        var counted = new ReadCountingStream(inner);
        var ssl = new SslStream(counted, leaveInnerStreamOpen: false);
        string? rejected = null;
        try
        {
            ssl.AuthenticateAsClient(new SslClientAuthenticationOptions
            {
                // Not checked (see the class comment), but SNI needs a name.
                TargetHost = "ferry-migration",
                // A context rather than a certificate collection: from a collection SslStream selects,
                // and may skip a certificate whose issuer the server did not list as acceptable; a
                // context is always offered, so the server, not this guess, decides and says why.
                ClientCertificateContext = SslStreamCertificateContext.Create(tls.Certificate, additionalCertificates: null, offline: true),
                EnabledSslProtocols = Protocols,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
                    (rejected = Check(cert, chain, errors, tls, "destination", required: true)) is null,
            });
            return ssl;
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException)
        {
            ssl.Dispose();
            throw new TransportException(
                rejected is not null ? $"TLS with {remote} refused: {rejected}"
                : counted.BytesRead == 0 ? $"TLS with {remote} refused: it closed the connection without answering TLS, as an agent that runs without TLS does (this host requires TLS)"
                : $"TLS handshake with {remote} failed: {Describe(ex)}", ex);
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
                // offline: the chain is this host's own; never fetch anything for it from the network.
                ServerCertificateContext = SslStreamCertificateContext.Create(tls.Certificate, additionalCertificates: null, offline: true),
                ClientCertificateRequired = tls.RequireClientCertificate,
                EnabledSslProtocols = Protocols,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
                    (rejected = Check(cert, chain, errors, tls, "source", tls.RequireClientCertificate)) is null,
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

    /// <summary>What to say when the peer closed the connection right after a TLS handshake that succeeded here: it refused this host's certificate.</summary>
    public static string RefusedOurCertificate(TlsOptions tls, string remote, bool client)
    {
        string peer = client ? "destination" : "source";
        string with = client ? "with" : "from";
        return $"TLS {with} {remote} refused by the {peer}: it closed the connection right after the TLS handshake, as a peer does that does not accept "
            + $"this host's certificate '{tls.Certificate.Subject}' (expired, or not issued by its CA; the {peer}'s log says which)";
    }

    /// <summary>Null when <paramref name="presented"/> is acceptable; otherwise why not, in words.</summary>
    /// <param name="sent">The chain SslStream built from what the peer sent: its extra certificates are the peer's intermediates.</param>
    internal static string? Check(X509Certificate? presented, X509Chain? sent, SslPolicyErrors errors, TlsOptions tls, string peer, bool required)
    {
        if (presented is null || (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            return required ? $"the {peer} presented no certificate (this host requires one from its CA '{tls.Authority.Subject}')" : null;
        }
        // Name mismatches and SslStream's own chain errors (against the system's roots) are ignored on
        // purpose: the chain is built again below against the configured CA alone.
        using var cert = X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        DateTime now = DateTime.Now;
        // NotBefore/NotAfter are local times: compare with local time, print in UTC.
        if (now > cert.NotAfter)
        {
            return $"the {peer}'s certificate '{cert.Subject}' expired on {cert.NotAfter.ToUniversalTime():u}";
        }
        if (now < cert.NotBefore)
        {
            return $"the {peer}'s certificate '{cert.Subject}' is not valid before {cert.NotBefore.ToUniversalTime():u}";
        }
        X509ChainStatusFlags[] statuses = ChainProblems(cert, tls.Authority, sent?.ChainPolicy.ExtraStore);
        if (statuses.Length == 0)
        {
            return null;
        }
        string status = string.Join(", ", statuses);
        if (statuses.Any(s => s is X509ChainStatusFlags.PartialChain or X509ChainStatusFlags.UntrustedRoot))
        {
            return $"the {peer}'s certificate '{cert.Subject}' (issued by '{cert.Issuer}') does not chain to this host's CA '{tls.Authority.Subject}' ({status})";
        }
        if (statuses.Contains(X509ChainStatusFlags.NotTimeValid))
        {
            // The peer's own dates were checked above, so it is the CA (or an intermediate) that is out of date.
            return $"the {peer}'s certificate '{cert.Subject}' chains to this host's CA '{tls.Authority.Subject}', but a CA certificate on the way is not valid now "
                + $"(this host's CA is valid {tls.Authority.NotBefore.ToUniversalTime():u} to {tls.Authority.NotAfter.ToUniversalTime():u})";
        }
        return $"the {peer}'s certificate '{cert.Subject}' (issued by '{cert.Issuer}') failed the check against this host's CA '{tls.Authority.Subject}' ({status})";
    }

    /// <summary>
    /// What is wrong with <paramref name="cert"/>'s chain to <paramref name="authority"/>, trusted
    /// alone (no system roots, no revocation lists, no downloads); empty when it chains.
    /// </summary>
    internal static X509ChainStatusFlags[] ChainProblems(X509Certificate2 cert, X509Certificate2 authority, X509Certificate2Collection? intermediates)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        if (intermediates is not null)
        {
            chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        }
        if (chain.Build(cert))
        {
            return [];
        }
        X509ChainStatusFlags[] problems = [.. chain.ChainStatus.Select(s => s.Status).Distinct()];
        // A failed build always names a status; should one ever not, it must still read as a failure.
        return problems.Length > 0 ? problems : [X509ChainStatusFlags.PartialChain];
    }

    private static string Describe(Exception ex) => ex.InnerException is { } inner && inner.Message != ex.Message ? $"{ex.Message} ({inner.Message})" : ex.Message;
}
