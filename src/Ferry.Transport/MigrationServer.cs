using System.Net;
using System.Net.Sockets;

namespace Ferry.Transport;

/// <summary>
/// Accepts migration connections: each one is tuned, secured (TLS when configured) and must prove
/// it holds the cluster key within the handshake timeout, on its own thread; then
/// <paramref name="accepted"/> gets it (and owns it from then on). A connection that fails any of
/// that is closed and reported to <paramref name="refused"/> with the reason.
/// </summary>
public sealed class MigrationServer : IDisposable
{
    private readonly Socket _listener;
    private readonly TransportOptions _options;
    private readonly Action<MigrationConnection> _accepted;
    private readonly Action<string, string> _refused;
    private readonly Action<string, Socket>? _connected;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _acceptThread;
    private readonly List<Thread> _threads = [];
    private readonly List<Socket> _open = [];

    /// <param name="accepted">Takes an authenticated connection; runs on the connection's own thread and may block for the whole migration.</param>
    /// <param name="refused">Told (remote, reason) of every connection that failed to authenticate.</param>
    /// <param name="connected">Told of every TCP connection as it arrives, before authentication (for listings).</param>
    public MigrationServer(IPEndPoint endpoint, TransportOptions options, Action<MigrationConnection> accepted, Action<string, string> refused,
        Action<string, Socket>? connected = null)
    {
        _options = options;
        _accepted = accepted;
        _refused = refused;
        _connected = connected;
        _listener = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(endpoint);
        _listener.Listen(16);
        Endpoint = (IPEndPoint)_listener.LocalEndPoint!;
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "ferry-migration-accept" };
        _acceptThread.Start();
    }

    /// <summary>Where it listens (the real port when 0 was asked for).</summary>
    public IPEndPoint Endpoint { get; }

    private void AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = _listener.Accept();
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }
            SocketTuning.ForReceiving(socket, _options);
            string remote = socket.RemoteEndPoint?.ToString() ?? "?";
            var thread = new Thread(() => Serve(socket, remote)) { IsBackground = true, Name = "ferry-incoming " + remote };
            lock (_threads)
            {
                _threads.RemoveAll(t => !t.IsAlive);
                _threads.Add(thread);
                _open.Add(socket);
            }
            _connected?.Invoke(remote, socket);
            thread.Start();
        }
    }

    private void Serve(Socket socket, string remote)
    {
        MigrationConnection connection;
        try
        {
            connection = MigrationConnector.Authenticate(socket, _options, remote, client: false);
        }
        catch (Exception ex)
        {
            socket.Dispose();
            lock (_threads)
            {
                _open.Remove(socket);
            }
            // A timeout arrives as a TransportException that says so; an IOException here is a connection lost part-way.
            string reason = ex is IOException ? $"connection lost during the handshake: {ex.Message}" : ex.Message;
            TransportLog.Refused(_options.Logger, remote, reason);
            _refused(remote, reason);
            return;
        }
        try
        {
            TransportLog.Accepted(_options.Logger, remote, connection.Encrypted ? "TLS" : "plain TCP");
            _accepted(connection);
        }
        finally
        {
            lock (_threads)
            {
                _open.Remove(socket);
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        Thread[] threads;
        lock (_threads)
        {
            foreach (Socket s in _open)
            {
                try
                {
                    s.Shutdown(SocketShutdown.Both);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    // Already closed.
                }
            }
            threads = [.. _threads];
        }
        foreach (Thread t in threads)
        {
            t.Join(TimeSpan.FromSeconds(5));
        }
        _acceptThread.Join(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}
