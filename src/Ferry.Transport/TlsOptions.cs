using System.Security.Cryptography.X509Certificates;

namespace Ferry.Transport;

/// <summary>
/// TLS for migration connections: this host's certificate and key, and the CA its peers'
/// certificates must chain to. Mutual: a server asks the client for its certificate and checks it
/// against the same CA (unless <see cref="RequireClientCertificate"/> is off).
/// </summary>
public sealed record TlsOptions
{
    /// <summary>This host's certificate, with its private key.</summary>
    public required X509Certificate2 Certificate { get; init; }

    /// <summary>The CA every peer certificate must chain to (and nothing else is trusted).</summary>
    public required X509Certificate2 Authority { get; init; }

    /// <summary>The server requires and checks a client certificate (mutual TLS). On by default.</summary>
    public bool RequireClientCertificate { get; init; } = true;
}
