using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Ferry.Agent.Api;
using Ferry.Agent.Client;
using Ferry.Agent.Hosting;
using Ferry.Agent.Vms;
using Ferry.Core.Migration;
using Ferry.Engine;
using Ferry.Engine.Source;
using Ferry.Protocol;
using Ferry.Transport;
using Ferry.Vm.Machine;
using Ferry.Vm.Tracking;
using Ferry.Core.Tracking;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Migrations;

/// <summary>
/// Migrations this agent sends. Each runs on its own thread (the engine blocks on the socket);
/// the API reads their progress snapshots. Shutdown cancels them, which leaves their VMs here.
/// </summary>
public sealed class MigrationManager : IDisposable
{
    private readonly ConcurrentDictionary<string, OutgoingMigration> _jobs = new(StringComparer.Ordinal);
    private readonly VmRegistry _vms;
    private readonly AgentOptions _options;
    private readonly ILogger _logger;
    private readonly Func<string> _selfEndpoint;

    private readonly ILogger _engineLogger;
    private readonly TransportOptions _transport;

    private readonly AgentLifecycle _lifecycle;

    public MigrationManager(VmRegistry vms, AgentOptions options, ILogger<MigrationManager> logger, AgentEndpoints endpoints, ILoggerFactory loggers, AgentLifecycle lifecycle)
    {
        _lifecycle = lifecycle;
        _engineLogger = loggers.CreateLogger("Ferry.Engine.Source");
        // Outgoing connections log through the transport (the listener logs its refusals itself, with the incoming list).
        _transport = options.Transport with { Logger = loggers.CreateLogger("Ferry.Transport") };
        _vms = vms;
        _options = options;
        _logger = logger;
        _selfEndpoint = () => endpoints.Api;
    }

    /// <summary>Migrations sending now (the shutdown waits for them).</summary>
    public int InProgress => _jobs.Values.Count(j => !j.IsFinished);

    /// <summary>Starts a migration. Throws ArgumentException (bad request), KeyNotFoundException (no such VM), InvalidOperationException (busy) or AgentShuttingDownException.</summary>
    public MigrationView Start(StartMigrationRequest request)
    {
        if (_lifecycle.ShuttingDown)
        {
            throw new AgentShuttingDownException();
        }
        MigrationOptions options = MigrationRequestParser.Parse(request, _options.DefaultDirtyLog, _options.StallTimeout);
        if (!Uri.TryCreate(request.Target, UriKind.Absolute, out Uri? target) || target.Scheme is not ("http" or "https"))
        {
            throw new ArgumentException($"target '{request.Target}' is not an agent URL (example: http://127.0.0.1:7101)");
        }
        IPEndPoint? viaEndpoint = null;
        if (request.MigrationEndpoint is { } via && (!IPEndPoint.TryParse(via, out viaEndpoint) || via.IndexOf(':') < 0))
        {
            throw new ArgumentException($"migration endpoint '{via}' is not ADDRESS:PORT (example: 127.0.0.1:7200)");
        }
        if (_vms.Find(request.VmId) is null)
        {
            throw new KeyNotFoundException($"no VM '{request.VmId}' on this agent");
        }
        if (!_vms.TryBeginMigration(request.VmId, out VirtualMachine? vm) || vm is null)
        {
            throw new InvalidOperationException($"VM '{request.VmId}' is already being migrated");
        }
        if (vm.State != VmRunState.Running && vm.State != VmRunState.Created)
        {
            _vms.EndMigration(request.VmId);
            throw new InvalidOperationException($"VM '{request.VmId}' is {vm.State.ToString().ToLowerInvariant()}; only a running VM can be migrated");
        }
        var job = new OutgoingMigration { Id = "m-" + Guid.NewGuid().ToString("n")[..10], VmId = vm.Id, Target = target.ToString().TrimEnd('/') };
        _jobs[job.Id] = job;
        job.Thread = new Thread(() => Run(job, vm, target, viaEndpoint, options)) { IsBackground = true, Name = "migrate:" + job.Id };
        job.Thread.Start();
        Log.OutgoingStarted(_logger, job.Id, vm.Id, job.Target);
        return job.View();
    }

    public MigrationView? Get(string id) => _jobs.TryGetValue(id, out var j) ? j.View() : null;

    public IEnumerable<MigrationView> List() => _jobs.Values.Select(j => j.View()).OrderBy(v => v.Id, StringComparer.Ordinal);

    /// <summary>What a resume request found.</summary>
    public enum ResumeResult
    {
        Resumed,
        NotFound,
        NotPaused,
    }

    /// <summary>Asks a paused post-copy to reconnect now, with a fresh automatic window.</summary>
    public ResumeResult Resume(string id, out MigrationView? view)
    {
        view = null;
        if (!_jobs.TryGetValue(id, out var job))
        {
            return ResumeResult.NotFound;
        }
        bool resumed = job.Session?.RequestResume() == true;
        view = job.View();
        if (resumed)
        {
            Log.ResumeRequested(_logger, id, job.Target);
        }
        return resumed ? ResumeResult.Resumed : ResumeResult.NotPaused;
    }

    /// <summary>Before switchover this stops the migration and the VM keeps running here; after a post-copy switchover it only acts while post-copy is paused, and abandons it.</summary>
    public MigrationView? Cancel(string id)
    {
        if (!_jobs.TryGetValue(id, out var job))
        {
            return null;
        }
        if (!job.IsFinished)
        {
            job.Cancel.Cancel();
        }
        return job.View();
    }

    private void Run(OutgoingMigration job, VirtualMachine vm, Uri target, IPEndPoint? via, MigrationOptions options)
    {
        MigrationConnection? connection = null;
        try
        {
            IPEndPoint migrationEndpoint = via ?? ResolveMigrationEndpoint(target, job.Cancel.Token);
            // A forced kernel log the host cannot give fails here, before anything touches the VM.
            using IDirtyLog dirtyLog = DirtyLogFactory.Create(vm.Memory, options.DirtyLog, workload: vm.Workload);
            // Every connection of this migration (the first, page connections, reconnections after a post-copy break) comes from here.
            var links = new TcpSourceLinks(migrationEndpoint, _transport);
            connection = MigrationConnector.Connect(migrationEndpoint, _transport, job.Cancel.Token);
            job.State = OutgoingState.Running;
            var session = new SourceMigration(job.Id, vm, links.Adopt(connection), options, dirtyLog,
                HostIdentity.Local(_selfEndpoint()), HostIdentity.Local(job.Target) with { HostName = "", Endpoint = job.Target }, links, logger: _engineLogger);
            job.Session = session;
            connection = null; // the session owns and closes it
            SourceResult result = session.Run(job.Cancel.Token);
            job.Report = result.Report;
            job.Error = result.Report.Error;
            if (result.VmMoved)
            {
                _vms.RemoveMigrated(vm.Id);
            }
            else
            {
                // A VM still paused here may run at the destination: only a forced resume starts it again.
                bool keptPaused = vm.State == VmRunState.Paused;
                _vms.EndMigration(vm.Id, result.Report.Outcome == MigrationOutcome.Unconfirmed
                    ? $"kept paused: the destination may be running this VM (commit sent, no confirmation); POST /v1/vms/{vm.Id}/resume?force=true if it is gone"
                    : keptPaused
                        ? $"kept paused: the VM ran at the destination by post-copy ({result.Report.Error})"
                        : $"last migration {result.Report.Outcome.ToWire()}: {result.Report.Error}", keptPaused);
            }
            job.State = MigrationStateNames.FromOutcome(result.Report.Outcome);
            Log.OutgoingEnded(_logger, job.Id, vm.Id, result.Report.Outcome.ToWire(), result.Report.Timing.TotalMs, result.Report.Timing.DowntimeMs);
            if (result.Report.Outcome == MigrationOutcome.Unconfirmed)
            {
                Log.OutgoingUnconfirmed(_logger, job.Id, vm.Id, result.Report.Error ?? "");
            }
            else if (!result.VmMoved && result.Report.PostCopy.Used)
            {
                Log.OutgoingPostCopyFailed(_logger, job.Id, vm.Id, result.Report.Error ?? "");
            }
            else if (!result.VmMoved)
            {
                Log.OutgoingFailed(_logger, job.Id, vm.Id, result.Report.Error ?? "");
            }
        }
        catch (Exception ex)
        {
            // Failed before the session started: the VM was never touched.
            connection?.Dispose();
            job.Error = job.Cancel.IsCancellationRequested ? "cancelled by request" : Describe(ex);
            job.State = job.Cancel.IsCancellationRequested ? OutgoingState.Cancelled : OutgoingState.Failed;
            _vms.EndMigration(vm.Id, $"last migration {job.State.ToWire()}: {job.Error}");
            Log.OutgoingFailed(_logger, job.Id, vm.Id, job.Error);
        }
    }

    private static string Describe(Exception ex) => ex switch
    {
        ProtocolException p => $"handshake with destination failed: {p.Message}",
        TransportException t => t.Message,
        PlatformNotSupportedException pns => pns.Message,
        SocketException s => $"cannot connect to destination: {s.Message}",
        _ => ex.Message,
    };

    private IPEndPoint ResolveMigrationEndpoint(Uri target, CancellationToken ct)
    {
        using var client = new AgentClient(target, _options.Key);
        AgentInfo info = client.InfoAsync(ct).GetAwaiter().GetResult();
        if (!IPEndPoint.TryParse(info.MigrationEndpoint, out var ep))
        {
            throw new InvalidOperationException($"destination reports an unusable migration endpoint '{info.MigrationEndpoint}'");
        }
        return ep;
    }

    public void Dispose()
    {
        foreach (var job in _jobs.Values)
        {
            if (!job.IsFinished)
            {
                job.Cancel.Cancel();
            }
        }
        foreach (var job in _jobs.Values)
        {
            job.Thread?.Join(TimeSpan.FromSeconds(10));
        }
    }
}
