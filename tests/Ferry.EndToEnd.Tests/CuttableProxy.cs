using System.Net;
using System.Net.Sockets;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// A TCP relay on 127.0.0.1 standing in for the network between two agents: it forwards every
/// connection to <c>upstream</c>, can cut all current connections at once (both sides see the link
/// drop, as when a cable is pulled and the stacks notice), and can refuse new ones for a while
/// (accepted, then closed at once) while it keeps listening on the same port.
/// </summary>
internal sealed class CuttableProxy : IDisposable
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);
    private readonly Socket _listener;
    private readonly IPEndPoint _upstream;
    private readonly Thread _acceptThread;
    private readonly List<(Socket Client, Socket Server)> _links = [];
    private readonly List<Task> _pumps = [];
    private volatile bool _refusing;
    private volatile bool _stopped;
    private int _accepted;

    public CuttableProxy(IPEndPoint upstream)
    {
        _upstream = upstream;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        Endpoint = (IPEndPoint)_listener.LocalEndPoint!;
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "test-proxy-accept" };
        _acceptThread.Start();
    }

    public IPEndPoint Endpoint { get; }

    /// <summary>Connections accepted and relayed (refused ones not counted).</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>While true, each new connection is closed as soon as it is accepted.</summary>
    public bool Refusing
    {
        get => _refusing;
        set => _refusing = value;
    }

    /// <summary>Drops every relayed connection now; new ones are still accepted (unless refusing).</summary>
    public int CutAll()
    {
        (Socket, Socket)[] links;
        lock (_links)
        {
            links = [.. _links];
            _links.Clear();
        }
        foreach (var (a, b) in links)
        {
            Close(a);
            Close(b);
        }
        return links.Length;
    }

    private void AcceptLoop()
    {
        while (!_stopped)
        {
            Socket client;
            try
            {
                client = _listener.Accept();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }
            if (_refusing)
            {
                Close(client);
                continue;
            }
            var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                server.Connect(_upstream);
            }
            catch (SocketException)
            {
                Close(client);
                server.Dispose();
                continue;
            }
            client.NoDelay = true;
            Interlocked.Increment(ref _accepted);
            lock (_links)
            {
                _links.Add((client, server));
                _pumps.Add(Pump(client, server));
                _pumps.Add(Pump(server, client));
            }
        }
    }

    /// <summary>Copies one direction until either side ends; then closes both, as a broken link would.</summary>
    private static async Task Pump(Socket from, Socket to)
    {
        byte[] buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }
                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Cut or closed: the finally ends the other direction too.
        }
        finally
        {
            Close(from);
            Close(to);
        }
    }

    private static void Close(Socket s)
    {
        try
        {
            s.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already down.
        }
        s.Dispose();
    }

    public void Dispose()
    {
        _stopped = true;
        _listener.Dispose();
        _acceptThread.Join(StopTimeout);
        CutAll();
        Task[] pumps;
        lock (_links)
        {
            pumps = [.. _pumps];
        }
        Task.WaitAll(pumps, StopTimeout);
    }
}
