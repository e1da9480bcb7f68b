using System.Net;
using System.Net.Sockets;
using Ferry.Protocol;
using Ferry.Protocol.Handshake;
using Ferry.Transport.Tls;

namespace Ferry.Transport;

/// <summary>The source's side of a migration connection: connect, tune, TLS (when configured), then the cluster-key handshake.</summary>
public static class MigrationConnector
{
    /// <summary>An authenticated connection to <paramref name="endpoint"/>. Throws <see cref="TransportException"/> (or the handshake's <see cref="ProtocolException"/>) with the reason.</summary>
    public static MigrationConnection Connect(IPEndPoint endpoint, TransportOptions options, CancellationToken ct)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                timeout.CancelAfter(options.ConnectTimeout);
                try
                {
                    socket.ConnectAsync(endpoint, timeout.Token).AsTask().GetAwaiter().GetResult();
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new TransportException($"cannot connect to {endpoint}: no answer within {options.ConnectTimeout.TotalSeconds:0} s");
                }
                catch (SocketException s)
                {
                    throw new TransportException($"cannot connect to {endpoint}: {s.Message}", s);
                }
            }
            SocketTuning.ForSending(socket, options);
            return Authenticate(socket, options, endpoint.ToString(), client: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// TLS (when configured) and the key handshake on a connected socket, either side, each bounded
    /// by <see cref="TransportOptions.HandshakeTimeout"/> so a silent peer costs one attempt, not a hang.
    /// </summary>
    internal static MigrationConnection Authenticate(Socket socket, TransportOptions options, string remote, bool client)
    {
        // The stream owns the socket: closing it (as a cut link or a finished migration does) closes the connection.
        var net = new NetworkStream(socket, ownsSocket: true);
        Stream stream = net;
        try
        {
            int limit = (int)Math.Min(int.MaxValue, options.HandshakeTimeout.TotalMilliseconds);
            socket.ReceiveTimeout = limit;
            socket.SendTimeout = limit;
            if (options.Tls is { } tls)
            {
                if (!client && PeekFirstByte(socket) is { } first && first != TlsLayer.HandshakeRecord)
                {
                    throw new TransportException($"connection from {remote} refused: it did not start TLS (this agent requires TLS; start the source with --tls)");
                }
                stream = client ? TlsLayer.Client(net, tls, remote) : TlsLayer.Server(net, tls, remote);
            }
            else if (!client && PeekFirstByte(socket) == TlsLayer.HandshakeRecord)
            {
                throw new TransportException($"connection from {remote} refused: it started TLS, and this agent runs without TLS");
            }
            try
            {
                if (client)
                {
                    MigrationHandshake.RunClient(stream, options.Key);
                }
                else
                {
                    MigrationHandshake.RunServer(stream, options.Key);
                }
            }
            catch (IOException io) when (options.Tls is null && client)
            {
                throw new TransportException($"{remote} closed the connection during the key handshake: {io.Message} (does it require TLS?)", io);
            }
            socket.ReceiveTimeout = 0;
            socket.SendTimeout = 0;
            return new MigrationConnection(stream, socket, options.Tls is not null, remote);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The first byte the peer sent, without taking it (null if it closed first or sent nothing in time).</summary>
    private static byte? PeekFirstByte(Socket socket)
    {
        Span<byte> one = stackalloc byte[1];
        try
        {
            return socket.Receive(one, SocketFlags.Peek) == 1 ? one[0] : null;
        }
        catch (SocketException)
        {
            return null;
        }
    }
}
