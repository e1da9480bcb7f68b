using System.Collections.Concurrent;
using System.Net;
using Ferry.Core.Pacing;
using Ferry.Engine;

namespace Ferry.Transport;

/// <summary>The engine's way to the destination over TCP (and TLS): every connection it opens goes through <see cref="MigrationConnector"/>.</summary>
public sealed class TcpSourceLinks : ISourceLinks
{
    private readonly IPEndPoint _endpoint;
    private readonly TransportOptions _options;
    private readonly ConcurrentDictionary<Stream, MigrationConnection> _open = new();

    public TcpSourceLinks(IPEndPoint endpoint, TransportOptions options)
    {
        _endpoint = endpoint;
        _options = options;
    }

    /// <summary>Registers a connection opened elsewhere (the first one), so <see cref="Delivered"/> can read its socket.</summary>
    public Stream Adopt(MigrationConnection connection)
    {
        _open[connection.Stream] = connection;
        return connection.Stream;
    }

    public bool CanOpen => true;

    public Stream Open(CancellationToken ct) => Adopt(MigrationConnector.Connect(_endpoint, _options, ct));

    public LinkDelivery? Delivered(Stream stream) => _open.TryGetValue(stream, out var c) ? c.Delivered() : null;

    public bool IsStall(Exception error) => MigrationConnector.IsTimeout(error);
}
