using System.Net;
using System.Net.Sockets;
using Ferry.Core.Migration;
using Ferry.Core.Tracking;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Engine.Source;
using Ferry.Protocol.Handshake;
using Ferry.Vm.Machine;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Support;

/// <summary>Runs a real migration between two in-process endpoints over loopback TCP.</summary>
internal static class LoopbackMigration
{
    public static readonly ClusterKey Key = new("test-cluster-key-0123456789abcdef"u8);

    public sealed record Outcome(SourceResult Source, VirtualMachine? Destination, Exception? DestinationError);

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

    public static Outcome Run(VirtualMachine vm, MigrationOptions options, Func<Stream, Stream>? wrapSource = null, CancellationToken ct = default,
        DirtyLogChoice dirtyLog = DirtyLogChoice.Software, DestinationLimits? limits = null, Func<Stream, Stream>? wrapReconnected = null,
        PageInstallChoice? pageInstall = null, Func<bool>? linkDown = null, Action<SourceMigration>? onSource = null,
        Func<Stream, Ferry.Core.Pacing.LinkDelivery?>? linkDelivery = null)
    {
        var (client, server) = ConnectedPair();
        var serverStream = new NetworkStream(server, ownsSocket: true);
        var clientStream = new NetworkStream(client, ownsSocket: true);
        VirtualMachine? received = null;
        Exception? destError = null;
        var dest = new Thread(() =>
        {
            try
            {
                MigrationHandshake.RunServer(serverStream, Key);
                DestinationLimits destinationLimits = limits ?? new DestinationLimits();
                if (pageInstall is { } install)
                {
                    destinationLimits = destinationLimits with { PageInstall = install };
                }
                received = new DestinationMigration(serverStream, HostIdentity.Local("dest"), destinationLimits).Run(CancellationToken.None);
            }
            catch (Exception ex)
            {
                destError = ex;
            }
            finally
            {
                serverStream.Dispose();
            }
        });
        dest.Start();
        MigrationHandshake.RunClient(clientStream, Key);
        Stream s = wrapSource?.Invoke(clientStream) ?? clientStream;
        using var log = DirtyLogFactory.Create(vm.Memory, dirtyLog);
        // With a recovery registry the source may reconnect after a post-copy link break: each new
        // connection is handshaken and handed to the waiting destination, as an agent's listener would.
        PostCopyRecoveryRegistry? registry = limits?.PostCopyRecovery;
        Func<CancellationToken, Stream>? reconnect = registry is null ? null : _ =>
        {
            if (linkDown?.Invoke() == true)
            {
                throw new IOException("connection refused (test: link down)");
            }
            var (c, sv) = ConnectedPair();
            var server = new NetworkStream(sv, ownsSocket: true);
            var client = new NetworkStream(c, ownsSocket: true);
            new Thread(() =>
            {
                try
                {
                    MigrationHandshake.RunServer(server, Key);
                    registry.Accept(server);
                }
                catch (Exception)
                {
                    server.Dispose();
                }
            }) { IsBackground = true }.Start();
            MigrationHandshake.RunClient(client, Key);
            return wrapReconnected?.Invoke(client) ?? client;
        };
        var source = new SourceMigration("m-test", vm, s, options, log, HostIdentity.Local("src"), HostIdentity.Local("dest"), reconnect, linkDelivery);
        onSource?.Invoke(source);
        SourceResult result = source.Run(ct);
        Assert.True(dest.Join(TimeSpan.FromSeconds(60)), "destination thread did not finish within 60 s");
        return new Outcome(result, received, destError);
    }
}
