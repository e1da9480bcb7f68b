using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Ferry.Core.Tracking;
using Ferry.Engine;
using Ferry.Engine.Destination;
using Ferry.Engine.Source;
using Ferry.Protocol.Handshake;
using Ferry.Transport;
using Ferry.Vm.Machine;
using Ferry.Vm.Tracking;

namespace Ferry.Bench;

/// <summary>
/// One real migration between two in-process endpoints over loopback TCP (127.0.0.1 only), set up
/// the way the agent sets it up: the source's dirty log from <see cref="DirtyLogFactory"/> with
/// <see cref="MigrationOptions.DirtyLog"/> and the VM's workload (as MigrationManager does), the
/// destination's <see cref="DestinationLimits.PageInstall"/> from the caller, the agent's socket
/// buffer sizes and the destination's idle timeout on its socket (as MigrationListener does).
/// The whole conversation, round acknowledgements included, is the engine's own:
/// <see cref="SourceMigration"/> on the calling thread, <see cref="DestinationMigration"/> on its own.
/// The VM that arrives is stopped and freed at once; the source VM is left paused for the caller.
/// </summary>
internal static class LoopbackMigration
{
    private static readonly ClusterKey Key = new("ferry-bench-loopback-key-0123456789"u8);

    /// <param name="Report">What the source measured.</param>
    /// <param name="WallMs">Caller's clock: connect + handshake + migration + destination thread done.</param>
    /// <param name="Sides">Where each side's thread spent its time.</param>
    public sealed record Result(MigrationReport Report, bool VmMoved, double WallMs, string? DestinationError, SideCosts Sides);

    /// <summary>
    /// Per-side thread accounting. The source migration thread's time blocked in Write is time
    /// spent waiting for the destination to drain the socket; the destination thread's time in
    /// Read is time waiting for the source. CPU figures come from /proc/thread-self/stat.
    /// </summary>
    public sealed record SideCosts
    {
        public double SourceThreadSeconds { get; init; }
        public double SourceUserSeconds { get; init; }
        public double SourceSystemSeconds { get; init; }
        public long SourceMinorFaults { get; init; }
        public double SourceBlockedInWriteSeconds { get; init; }
        public double DestinationThreadSeconds { get; init; }
        public double DestinationUserSeconds { get; init; }
        public double DestinationSystemSeconds { get; init; }
        public long DestinationMinorFaults { get; init; }
        public double DestinationBlockedInReadSeconds { get; init; }
    }

    /// <summary>SO_SNDBUF the agent sets on its outgoing migration socket (MigrationManager.Connect).</summary>
    public const int SourceSendBuffer = 4 << 20;

    /// <summary>SO_RCVBUF the agent sets on an accepted migration socket (MigrationListener.AcceptLoop).</summary>
    public const int DestinationReceiveBuffer = 4 << 20;

    /// <summary>The transport settings of these migrations: the agent's (Ferry.Transport's defaults), with a bench key.</summary>
    public static readonly TransportOptions Transport = new() { Key = Key, SendBufferBytes = SourceSendBuffer, ReceiveBufferBytes = DestinationReceiveBuffer };

    /// <summary>A connected loopback pair tuned as migration sockets are (Ferry.Transport), with no handshake: raw TCP uses it, so the two compare like for like.</summary>
    public static (Socket Client, Socket Server) ConnectedPair() => LoopbackPair.OpenSockets(Transport);

    /// <summary>
    /// Migrates <paramref name="vm"/> (running) and returns the source's report. Bounded by <paramref name="timeout"/>.
    /// The report names the backends used: <c>DirtyLog.Backend</c> (source) and <c>PageInstall.Backend</c> (destination, from its OfferAccepted).
    /// </summary>
    /// <param name="pageConnections">Page connections besides the control one (0, the default: everything on one connection, as the other verbs measure).</param>
    /// <param name="transport">Connection settings (TLS among them); null: <see cref="Transport"/>.</param>
    public static Result Run(VirtualMachine vm, MigrationOptions options, PageInstallChoice pageInstall, string migrationId, TimeSpan timeout,
        int pageConnections = 0, TransportOptions? transport = null)
    {
        using var cts = new CancellationTokenSource(timeout);
        long t0 = Stopwatch.GetTimestamp();
        transport ??= Transport;
        options = options with { PageConnections = pageConnections };
        var limits = new DestinationLimits
        {
            PageInstall = pageInstall,
            PageChannels = pageConnections > 0 ? new PageChannelRegistry() : null,
        };
        // Page connections arrive as an agent's listener would hand them over: a destination session dispatches each by its first frame.
        LoopbackLinks? links = pageConnections > 0
            ? new LoopbackLinks(transport, c => new DestinationMigration(c.Stream, HostIdentity.Local("127.0.0.1 (bench destination)"), limits).RunOrResume(cts.Token)?.Dispose())
            : null;
        // As MigrationManager does: a forced kernel log the host cannot give fails here, before any connection.
        using IDirtyLog log = DirtyLogFactory.Create(vm.Memory, options.DirtyLog, workload: vm.Workload);
        // Both ends authenticated by Ferry.Transport, as the agent's connector and listener do.
        var (client, server) = LoopbackPair.Open(transport);
        // As MigrationListener does once the handshake is done: a silent peer cannot hold the destination forever.
        server.Socket.ReceiveTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
        server.Socket.SendTimeout = (int)limits.IdleTimeout.TotalMilliseconds;
        var serverStream = new MeteredStream(server.Stream);
        var clientStream = new MeteredStream(client.Stream);
        VirtualMachine? received = null;
        Exception? destError = null;
        ThreadCpu destCpu = ThreadCpu.Zero;
        double destSeconds = 0;
        double destReadSeconds = 0;
        var dest = new Thread(() =>
        {
            ThreadCpu cpu0 = ThreadCpu.Now();
            long d0 = Stopwatch.GetTimestamp();
            try
            {
                received = new DestinationMigration(serverStream, HostIdentity.Local("127.0.0.1 (bench destination)"), limits)
                    .Run(cts.Token);
            }
            catch (Exception ex)
            {
                destError = ex;
            }
            finally
            {
                destSeconds = Stopwatch.GetElapsedTime(d0).TotalSeconds;
                destCpu = ThreadCpu.Now() - cpu0;
                destReadSeconds = serverStream.ReadSeconds;
                serverStream.Dispose();
                server.Dispose();
            }
        })
        { IsBackground = true, Name = "bench-destination" };
        dest.Start();
        SourceResult result;
        ThreadCpu srcCpu0 = ThreadCpu.Now();
        long s0 = Stopwatch.GetTimestamp();
        ThreadCpu srcCpu;
        double srcSeconds;
        try
        {
            var source = new SourceMigration(migrationId, vm, clientStream, options, log,
                HostIdentity.Local("127.0.0.1 (bench source)"), HostIdentity.Local("127.0.0.1 (bench destination)"), links);
            // SourceMigration.Run closes the stream when it ends.
            result = source.Run(cts.Token);
        }
        finally
        {
            srcSeconds = Stopwatch.GetElapsedTime(s0).TotalSeconds;
            srcCpu = ThreadCpu.Now() - srcCpu0;
            clientStream.Dispose();
            client.Dispose();
            if (!dest.Join(timeout))
            {
                // Unblock the destination's read, then give it a last bounded chance.
                serverStream.Dispose();
                dest.Join(TimeSpan.FromSeconds(10));
            }
        }
        double wallMs = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        if (dest.IsAlive)
        {
            throw new InvalidOperationException("destination thread did not finish in time");
        }
        // The migrated VM starts running at the destination; the benchmark has no use for it.
        received?.Dispose();
        var sides = new SideCosts
        {
            SourceThreadSeconds = srcSeconds,
            SourceUserSeconds = srcCpu.UserSeconds,
            SourceSystemSeconds = srcCpu.SystemSeconds,
            SourceMinorFaults = srcCpu.MinorFaults,
            SourceBlockedInWriteSeconds = clientStream.WriteSeconds,
            DestinationThreadSeconds = destSeconds,
            DestinationUserSeconds = destCpu.UserSeconds,
            DestinationSystemSeconds = destCpu.SystemSeconds,
            DestinationMinorFaults = destCpu.MinorFaults,
            DestinationBlockedInReadSeconds = destReadSeconds,
        };
        return new Result(result.Report, result.VmMoved, wallMs, destError?.Message, sides);
    }
}
