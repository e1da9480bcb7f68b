using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Ferry.Agent.Api;
using Ferry.Agent.Hosting;
using Ferry.Agent.Vms;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Protocol;
using Ferry.Protocol.Handshake;
using Ferry.Vm.Machine;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Migrations;

/// <summary>
/// Accepts incoming migrations. Each connection must complete the key handshake within
/// <see cref="HandshakeTimeout"/>; then a destination session receives the VM on its own thread.
/// A failed or refused migration leaves nothing behind.
/// </summary>
public sealed class MigrationListener : IDisposable
{
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);
    private readonly Socket _listener;
    private readonly VmRegistry _vms;
    private readonly AgentOptions _options;

    /// <summary>Post-copies whose link broke wait here for their source to reconnect.</summary>
    private readonly PostCopyRecoveryRegistry _recovery = new();
    private readonly ILogger _logger;
    private readonly AgentEndpoints _endpoints;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<int, Incoming> _incoming = new();
    private readonly Thread _acceptThread;
    private int _nextId;

    private sealed class Incoming
    {
        public required string Remote { get; init; }
        private volatile int _state;

        public IncomingState State
        {
            get => (IncomingState)_state;
            set => _state = (int)value;
        }

        public DestinationMigration? Session;
        public string? Error;
        public Socket? Socket;
        public Thread? Thread;
    }

    public MigrationListener(VmRegistry vms, AgentOptions options, ILogger<MigrationListener> logger, AgentEndpoints endpoints)
    {
        _vms = vms;
        _options = options;
        _logger = logger;
        _endpoints = endpoints;
        _listener = new Socket(options.MigrationEndpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(options.MigrationEndpoint);
        _listener.Listen(16);
        var bound = (IPEndPoint)_listener.LocalEndPoint!;
        endpoints.Migration = bound.ToString();
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "ferry-migration-accept" };
        _acceptThread.Start();
    }

    public IEnumerable<IncomingView> List() => _incoming.OrderBy(kv => kv.Key).Select(kv => new IncomingView
    {
        RemoteEndpoint = kv.Value.Remote,
        MigrationId = kv.Value.Session?.Offer?.MigrationId,
        VmId = kv.Value.Session?.Offer?.VmId,
        // While receiving, the session knows more: post-copy, or post-copy paused waiting for the source.
        State = kv.Value.State == IncomingState.Receiving && kv.Value.Session is { } session ? MigrationStateNames.FromPhase(session.Phase) : kv.Value.State,
        PagesReceived = kv.Value.Session?.PagesReceived ?? 0,
        Error = kv.Value.Error,
    });

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
            socket.NoDelay = true;
            socket.ReceiveBufferSize = 4 << 20;
            var incoming = new Incoming { Remote = socket.RemoteEndPoint?.ToString() ?? "?", Socket = socket };
            int id = Interlocked.Increment(ref _nextId);
            _incoming[id] = incoming;
            incoming.Thread = new Thread(() => Receive(incoming)) { IsBackground = true, Name = "ferry-incoming-" + id };
            incoming.Thread.Start();
        }
    }

    private void Receive(Incoming incoming)
    {
        Socket socket = incoming.Socket!;
        var stream = new NetworkStream(socket, ownsSocket: true);
        bool handedOver = false;
        try
        {
            socket.ReceiveTimeout = (int)HandshakeTimeout.TotalMilliseconds;
            socket.SendTimeout = (int)HandshakeTimeout.TotalMilliseconds;
            try
            {
                MigrationHandshake.RunServer(stream, _options.Key);
            }
            catch (Exception ex) when (ex is ProtocolException or IOException)
            {
                incoming.State = IncomingState.Refused;
                incoming.Error = ex is IOException ? "no handshake within " + HandshakeTimeout.TotalSeconds + " s" : ex.Message;
                Log.MigrationRefused(_logger, incoming.Remote, incoming.Error);
                return;
            }
            var limits = new DestinationLimits
            {
                MaxMemoryBytes = _options.MaxVmMemoryBytes,
                PageInstall = _options.PageInstall,
                PostCopyRecovery = _recovery,
                RecoveryTimeout = _options.PostCopyPauseLimit,
            };
            socket.ReceiveTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
            socket.SendTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
            incoming.State = IncomingState.Receiving;
            var session = new DestinationMigration(stream, HostIdentity.Local(_endpoints.Api), limits, offer =>
            {
                Log.IncomingStarted(_logger, offer.VmId, offer.MigrationId, incoming.Remote);
                return _vms.Contains(offer.VmId) ? $"a VM with id '{offer.VmId}' already runs on this agent" : null;
            });
            incoming.Session = session;
            VirtualMachine? received = session.RunOrResume(_stop.Token);
            if (received is not { } vm)
            {
                // A source came back for a post-copy whose link broke: that migration owns this connection now.
                handedOver = true;
                incoming.State = IncomingState.ResumedPostCopy;
                return;
            }
            if (!_vms.TryAdd(vm))
            {
                // Raced with a VM of the same id created meanwhile; should not happen, never lose both.
                vm.Pause();
                incoming.Error = $"VM id '{vm.Id}' appeared here during the migration; received copy kept paused";
            }
            incoming.State = IncomingState.Completed;
            Log.IncomingCompleted(_logger, vm.Id, incoming.Remote);
        }
        catch (Exception ex)
        {
            incoming.State = IncomingState.Failed;
            incoming.Error = ex is IOException io ? "connection lost: " + (io.InnerException?.Message ?? io.Message) : ex.Message;
            if (incoming.Session is { Offer: { } offer } s && s.RanVm)
            {
                Log.IncomingPostCopyLost(_logger, offer.VmId, offer.MigrationId, incoming.Remote, incoming.Error);
            }
            else
            {
                Log.IncomingFailed(_logger, incoming.Remote, incoming.Error);
            }
        }
        finally
        {
            if (!handedOver)
            {
                stream.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        foreach (var i in _incoming.Values)
        {
            try
            {
                i.Socket?.Shutdown(SocketShutdown.Both);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // Already closed.
            }
            i.Thread?.Join(TimeSpan.FromSeconds(5));
        }
        _acceptThread.Join(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}
