using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Ferry.Transport.Tls;

/// <summary>
/// Loads <see cref="TlsOptions"/> from PEM files, with errors that name the file and what is wrong
/// with it. What would make every peer refuse this host (its own certificate out of date, a CA
/// file that holds no CA) is caught here, at start, rather than at each migration.
/// </summary>
public static class TlsFiles
{
    public static TlsOptions Load(string certificatePath, string keyPath, string authorityPath, bool requireClientCertificate = true)
    {
        X509Certificate2 cert;
        try
        {
            cert = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new TransportException($"cannot load the TLS certificate '{certificatePath}' with its key '{keyPath}': {ex.Message}", ex);
        }
        try
        {
            if (!cert.HasPrivateKey)
            {
                throw new TransportException($"the TLS key '{keyPath}' does not belong to the certificate '{certificatePath}'");
            }
            DateTime now = DateTime.Now;
            if (now > cert.NotAfter || now < cert.NotBefore)
            {
                throw new TransportException($"the TLS certificate '{certificatePath}' ('{cert.Subject}') is valid only from {cert.NotBefore.ToUniversalTime():u} "
                    + $"to {cert.NotAfter.ToUniversalTime():u}: every peer would refuse it");
            }
            X509Certificate2 ca = LoadAuthority(authorityPath);
            // The agent's warm-up connects to itself with these files, and peers sharing the CA check
            // the same chain: a certificate from another CA would fail there, less clearly.
            if (TlsLayer.ChainProblems(cert, ca, intermediates: null) is { Length: > 0 } problems)
            {
                string message = $"the TLS certificate '{certificatePath}' ('{cert.Subject}', issued by '{cert.Issuer}') does not chain to the TLS CA "
                    + $"'{authorityPath}' ('{ca.Subject}'; {string.Join(", ", problems)}): peers that trust that CA would refuse it";
                ca.Dispose();
                throw new TransportException(message);
            }
            return new TlsOptions { Certificate = cert, Authority = ca, RequireClientCertificate = requireClientCertificate };
        }
        catch
        {
            cert.Dispose();
            throw;
        }
    }

    private static X509Certificate2 LoadAuthority(string authorityPath)
    {
        X509Certificate2 ca;
        try
        {
            ca = X509CertificateLoader.LoadCertificateFromFile(authorityPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new TransportException($"cannot load the TLS CA '{authorityPath}': {ex.Message}", ex);
        }
        // A host certificate given as the CA would make every peer's chain fail with a puzzling "does not chain".
        if (ca.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is not { CertificateAuthority: true })
        {
            string subject = ca.Subject;
            ca.Dispose();
            throw new TransportException($"the TLS CA '{authorityPath}' holds '{subject}', which is not a CA certificate (no basic constraints with CA:TRUE)");
        }
        return ca;
    }
}
