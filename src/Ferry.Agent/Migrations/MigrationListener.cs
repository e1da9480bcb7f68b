using System.Collections.Concurrent;
using Ferry.Agent.Api;
using Ferry.Agent.Hosting;
using Ferry.Agent.Vms;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Protocol;
using Ferry.Transport;
using Ferry.Vm.Machine;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Migrations;

/// <summary>
/// Accepts incoming migrations through Ferry.Transport's <see cref="MigrationServer"/>: each
/// connection is tuned, secured (TLS when configured) and must prove it holds the cluster key within
/// the handshake timeout; then a destination session receives the VM on the connection's own
/// thread. A failed or refused migration leaves nothing behind.
/// </summary>
public sealed class MigrationListener : IDisposable
{
    private readonly MigrationServer _server;
    private readonly VmRegistry _vms;
    private readonly AgentOptions _options;

    /// <summary>Post-copies whose link broke wait here for their source to reconnect.</summary>
    private readonly PostCopyRecoveryRegistry _recovery = new();

    /// <summary>Page connections of migrations under way arrive here.</summary>
    private readonly PageChannelRegistry _pageChannels = new();
    private readonly ILogger _logger;
    private readonly AgentEndpoints _endpoints;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<string, Incoming> _byRemote = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, Incoming> _incoming = new();
    private int _nextId;

    private sealed class Incoming
    {
        private volatile int _state;

        public required string Remote { get; init; }

        public int Id { get; init; }

        public IncomingState State
        {
            get => (IncomingState)_state;
            set => _state = (int)value;
        }

        public DestinationMigration? Session;
        public string? Error;
    }

    private readonly ILogger _engineLogger;

    private readonly AgentLifecycle _lifecycle;

    public MigrationListener(VmRegistry vms, AgentOptions options, ILogger<MigrationListener> logger, AgentEndpoints endpoints, ILoggerFactory loggers, AgentLifecycle lifecycle)
    {
        _lifecycle = lifecycle;
        _engineLogger = loggers.CreateLogger("Ferry.Engine.Destination");
        _vms = vms;
        _options = options;
        _logger = logger;
        _endpoints = endpoints;
        _server = new MigrationServer(options.MigrationEndpoint, options.Transport, Receive, Refused, Connected);
        endpoints.Migration = _server.Endpoint.ToString();
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

    /// <summary>Refused connections listed with their reason (older ones are only counted): a flood of them must not grow the list without end.</summary>
    public const int RefusedListed = 32;

    private readonly ConcurrentQueue<int> _refusedIds = new();
    private long _refusedTotal;

    /// <summary>Connections refused since start (the listing keeps the last <see cref="RefusedListed"/>).</summary>
    public long RefusedTotal => Interlocked.Read(ref _refusedTotal);

    /// <summary>Sessions receiving a VM now (the shutdown waits for them).</summary>
    public int InProgress => _incoming.Values.Count(i => i.State is IncomingState.Receiving);

    private void Connected(string remote, System.Net.Sockets.Socket socket)
    {
        var incoming = new Incoming { Remote = remote, Id = Interlocked.Increment(ref _nextId) };
        _byRemote[remote] = incoming;
        _incoming[incoming.Id] = incoming;
    }

    private Incoming For(string remote) => _byRemote.TryGetValue(remote, out var i) ? i : new Incoming { Remote = remote };

    private void Refused(string remote, string reason)
    {
        Incoming incoming = For(remote);
        incoming.State = IncomingState.Refused;
        incoming.Error = reason;
        _byRemote.TryRemove(remote, out _);
        Interlocked.Increment(ref _refusedTotal);
        if (incoming.Id != 0)
        {
            _refusedIds.Enqueue(incoming.Id);
            while (_refusedIds.Count > RefusedListed && _refusedIds.TryDequeue(out int old))
            {
                _incoming.TryRemove(old, out _);
            }
        }
        Log.MigrationRefused(_logger, remote, reason);
    }

    private void Receive(MigrationConnection connection)
    {
        Incoming incoming = For(connection.Remote);
        _byRemote.TryRemove(connection.Remote, out _);
        bool handedOver = false;
        string? reserved = null;
        try
        {
            var limits = new DestinationLimits
            {
                IdleTimeout = _options.StallTimeout,
                MaxMemoryBytes = _options.MaxVmMemoryBytes,
                PageInstall = _options.PageInstall,
                PostCopyRecovery = _recovery,
                RecoveryTimeout = _options.PostCopyPauseLimit,
                PageChannels = _pageChannels,
            };
            // A silent peer must not hold guest RAM here forever.
            connection.Socket.ReceiveTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
            connection.Socket.SendTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
            incoming.State = IncomingState.Receiving;
            var session = new DestinationMigration(connection.Stream, HostIdentity.Local(_endpoints.Api), limits, offer =>
            {
                Log.IncomingStarted(_logger, offer.VmId, offer.MigrationId, incoming.Remote);
                if (_lifecycle.ShuttingDown)
                {
                    return AgentLifecycle.ShuttingDownMessage;
                }
                // The id and the memory are taken now, at the offer: a second offer of the same id is refused while this one runs.
                VmRegistry.AdmitResult admit = _vms.TryReserve(offer.VmId, offer.MemoryBytes);
                if (admit != VmRegistry.AdmitResult.Admitted)
                {
                    return _vms.Describe(admit, offer.VmId, offer.MemoryBytes);
                }
                reserved = offer.VmId;
                return null;
            }, logger: _engineLogger);
            incoming.Session = session;
            VirtualMachine? received = session.RunOrResume(_stop.Token);
            if (received is not { } vm)
            {
                handedOver = true;
                if (session.HandedOver == DestinationMigration.Handover.PageConnection)
                {
                    // Part of a migration already listed: not a migration of its own.
                    _incoming.TryRemove(incoming.Id, out _);
                    return;
                }
                // A source came back for a post-copy whose link broke: that migration owns this connection now.
                incoming.State = IncomingState.ResumedPostCopy;
                return;
            }
            // Its offer reserved the id: nothing else could take it meanwhile.
            _vms.AddArrived(vm);
            reserved = null;
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
            if (reserved is not null)
            {
                _vms.ReleaseReservation(reserved);
            }
            if (!handedOver)
            {
                connection.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _server.Dispose();
        _stop.Dispose();
    }
}
