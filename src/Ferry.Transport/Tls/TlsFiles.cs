using System.Security.Cryptography.X509Certificates;

namespace Ferry.Transport.Tls;

/// <summary>Loads <see cref="TlsOptions"/> from PEM files, with errors that name the file and what is wrong with it.</summary>
public static class TlsFiles
{
    public static TlsOptions Load(string certificatePath, string keyPath, string authorityPath, bool requireClientCertificate = true)
    {
        X509Certificate2 cert;
        try
        {
            cert = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new TransportException($"cannot load the TLS certificate '{certificatePath}' with its key '{keyPath}': {ex.Message}", ex);
        }
        if (!cert.HasPrivateKey)
        {
            throw new TransportException($"the TLS key '{keyPath}' does not belong to the certificate '{certificatePath}'");
        }
        X509Certificate2 ca;
        try
        {
            ca = X509CertificateLoader.LoadCertificateFromFile(authorityPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new TransportException($"cannot load the TLS CA '{authorityPath}': {ex.Message}", ex);
        }
        return new TlsOptions { Certificate = cert, Authority = ca, RequireClientCertificate = requireClientCertificate };
    }
}
