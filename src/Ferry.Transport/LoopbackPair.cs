using System.Net;
using System.Net.Sockets;

namespace Ferry.Transport;

/// <summary>
/// Two ends of one migration connection over 127.0.0.1, set up by the very code real connections
/// use (tuning, TLS when configured, the key handshake): for tests, benchmarks and the agent's warm-up.
/// </summary>
public static class LoopbackPair
{
    /// <summary>Two connected, tuned sockets and nothing more (no TLS, no handshake): the raw-TCP baselines of the benchmarks, set up like migration sockets.</summary>
    public static (Socket Client, Socket Server) OpenSockets(TransportOptions options)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            client.Connect(listener.LocalEndPoint!);
            SocketTuning.ForSending(client, options);
            Socket server = listener.Accept();
            SocketTuning.ForReceiving(server, options);
            return (client, server);
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    public static (MigrationConnection Client, MigrationConnection Server) Open(TransportOptions options)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var endpoint = (IPEndPoint)listener.LocalEndPoint!;
        MigrationConnection? server = null;
        Exception? serverError = null;
        var accept = new Thread(() =>
        {
            try
            {
                Socket s = listener.Accept();
                SocketTuning.ForReceiving(s, options);
                server = MigrationConnector.Authenticate(s, options, "loopback source", client: false);
            }
            catch (Exception ex)
            {
                serverError = ex;
            }
        }) { IsBackground = true, Name = "ferry-loopback-accept" };
        accept.Start();
        MigrationConnection client;
        try
        {
            client = MigrationConnector.Connect(endpoint, options, CancellationToken.None);
        }
        finally
        {
            accept.Join(options.HandshakeTimeout + TimeSpan.FromSeconds(5));
        }
        if (server is null)
        {
            client.Dispose();
            throw new TransportException("loopback pair: the server side did not authenticate: " + serverError?.Message, serverError);
        }
        return (client, server);
    }
}
