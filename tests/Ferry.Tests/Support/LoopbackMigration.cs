using System.Net;
using System.Net.Sockets;
using Ferry.Core.Migration;
using Ferry.Core.Pacing;
using Ferry.Core.Tracking;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Engine.Source;
using Ferry.Protocol.Handshake;
using Ferry.Transport;
using Ferry.Vm.Machine;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Support;

/// <summary>Runs a real migration between two in-process endpoints over loopback TCP, connections set up by Ferry.Transport.</summary>
internal static class LoopbackMigration
{
    public static readonly ClusterKey Key = new("test-cluster-key-0123456789abcdef"u8);

    public static readonly TransportOptions Transport = new() { Key = Key };

    public sealed record Outcome(SourceResult Source, VirtualMachine? Destination, Exception? DestinationError);

    /// <summary>Two raw connected sockets (no handshake): for tests of the handshake itself.</summary>
    public static (Socket Client, Socket Server) ConnectedPair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.Connect(listener.LocalEndPoint!);
        Socket server = listener.Accept();
        server.NoDelay = true;
        return (client, server);
    }

    /// <summary>
    /// The source's further connections in these tests (page connections, reconnections after a
    /// post-copy break): each is a fresh loopback pair whose server end is dispatched by its first
    /// frame exactly as an agent's listener does (a destination session that hands it to the
    /// migration it names); <c>linkDown</c> refuses connections while it holds.
    /// </summary>
    private sealed class Links(DestinationLimits? limits, Func<bool>? linkDown, Func<Stream, Stream>? wrapReconnected,
        Func<Stream, LinkDelivery?>? linkDelivery, TransportOptions transport) : ISourceLinks
    {
        public bool CanOpen => limits is { PostCopyRecovery: not null } or { PageChannels: not null };

        private readonly LoopbackLinks _loopback = new(transport, server =>
            new DestinationMigration(server.Stream, HostIdentity.Local("dest"), limits!).RunOrResume(CancellationToken.None)?.Dispose());

        public Stream Open(CancellationToken ct)
        {
            if (!CanOpen || linkDown?.Invoke() == true)
            {
                throw new IOException("connection refused (test: link down)");
            }
            Stream client = _loopback.Open(ct);
            return wrapReconnected?.Invoke(client) ?? client;
        }

        public LinkDelivery? Delivered(Stream stream) => linkDelivery?.Invoke(stream);
    }

    public static Outcome Run(VirtualMachine vm, MigrationOptions options, Func<Stream, Stream>? wrapSource = null, CancellationToken ct = default,
        DirtyLogChoice dirtyLog = DirtyLogChoice.Software, DestinationLimits? limits = null, Func<Stream, Stream>? wrapReconnected = null,
        PageInstallChoice? pageInstall = null, Func<bool>? linkDown = null, Action<SourceMigration>? onSource = null,
        Func<Stream, LinkDelivery?>? linkDelivery = null, int pageConnections = 0, TransportOptions? transport = null,
        Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        // Every connection of the migration (first, page connections, reconnections) is set up with these options (TLS included, when given).
        transport ??= Transport;
        if (pageConnections > 0)
        {
            // Page connections: the destination takes them through its registry, the source opens them through its links.
            limits = (limits ?? new DestinationLimits()) with { PageChannels = new PageChannelRegistry() };
        }
        options = options with { PageConnections = pageConnections };
        var (client, server) = LoopbackPair.Open(transport);
        VirtualMachine? received = null;
        Exception? destError = null;
        var dest = new Thread(() =>
        {
            try
            {
                DestinationLimits destinationLimits = limits ?? new DestinationLimits();
                if (pageInstall is { } install)
                {
                    destinationLimits = destinationLimits with { PageInstall = install };
                }
                received = new DestinationMigration(server.Stream, HostIdentity.Local("dest"), destinationLimits).Run(CancellationToken.None);
            }
            catch (Exception ex)
            {
                destError = ex;
            }
            finally
            {
                server.Dispose();
            }
        });
        dest.Start();
        Stream s = wrapSource?.Invoke(client.Stream) ?? client.Stream;
        using var log = DirtyLogFactory.Create(vm.Memory, dirtyLog);
        DestinationLimits? linkLimits = limits is null ? null : limits with { PageInstall = pageInstall ?? limits.PageInstall };
        ISourceLinks? links = limits is { PostCopyRecovery: null, PageChannels: null } or null && linkDelivery is null
            ? null
            : new Links(linkLimits, linkDown, wrapReconnected, linkDelivery, transport);
        var source = new SourceMigration("m-test", vm, s, options, log, HostIdentity.Local("src"), HostIdentity.Local("dest"), links, logger: logger);
        onSource?.Invoke(source);
        SourceResult result = source.Run(ct);
        client.Dispose();
        Assert.True(dest.Join(TimeSpan.FromSeconds(60)), "destination thread did not finish within 60 s");
        return new Outcome(result, received, destError);
    }
}
