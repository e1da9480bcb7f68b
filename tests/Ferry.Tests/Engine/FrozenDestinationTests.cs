using Ferry.Core.Migration;
using Ferry.Core.Tracking;
using Ferry.Engine;
using Ferry.Engine.Source;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;
using Ferry.Tests.Support;
using Ferry.Transport;
using Ferry.Vm.Machine;
using Ferry.Vm.Tracking;

namespace Ferry.Tests.Engine;

/// <summary>
/// A destination that accepts the offer and then stops reading, over a real loopback socket: what a
/// SIGSTOPped destination or a silent partition looks like to the source. The kernel's buffers
/// fill, the source's write blocks; before the stall timeout and the cancel's close, that write
/// (and, in stop-and-copy, the paused VM) waited forever.
/// </summary>
public sealed class FrozenDestinationTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    /// <summary>The destination end: reads the offer, accepts it, then holds the connection open without reading until disposed.</summary>
    private sealed class FrozenDestination : IDisposable
    {
        private readonly MigrationConnection _server;
        private readonly Thread _thread;
        private readonly ManualResetEventSlim _accepted = new();

        public FrozenDestination(MigrationConnection server)
        {
            _server = server;
            _thread = new Thread(() =>
            {
                try
                {
                    var reader = new FrameReader(server.Stream);
                    Frame offer = reader.Read();
                    Assert.Equal(FrameType.Offer, offer.Type);
                    var writer = new FrameWriter(server.Stream);
                    writer.Write(FrameType.OfferAccepted, ControlJson.Encode(new OfferAccepted { DestinationHost = "frozen", PageInstall = "copy" }));
                    writer.Flush();
                    _accepted.Set();
                }
                catch (Exception)
                {
                    // The source went away first: nothing to accept.
                }
            }) { IsBackground = true, Name = "frozen-destination" };
            _thread.Start();
        }

        public bool Accepted => _accepted.IsSet;

        public void Dispose()
        {
            _server.Dispose();
            _thread.Join(TimeSpan.FromSeconds(10));
            _accepted.Dispose();
        }
    }

    private static VirtualMachine RandomFilledVm(long memory = 64L << 20)
    {
        // Random RAM: no page goes as a zero marker, so the socket buffers fill and the write blocks.
        var vm = VirtualMachine.Create(new VmConfig { Id = "frozen", MemoryBytes = memory, Vcpus = 1, Workload = "idle", Fill = RamFill.Random });
        vm.Start();
        return vm;
    }

    private static (SourceResult Result, bool Accepted) Migrate(VirtualMachine vm, MigrationOptions options, CancellationToken ct = default)
    {
        var (client, server) = LoopbackPair.Open(LoopbackMigration.Transport);
        using var destination = new FrozenDestination(server);
        using IDirtyLog log = DirtyLogFactory.Create(vm.Memory, DirtyLogChoice.Software);
        var source = new SourceMigration("m-frozen", vm, client.Stream, options with { PageConnections = 0 }, log, HostIdentity.Local("src"), HostIdentity.Local("dest"));
        SourceResult result = Bounded.Run(() => source.Run(ct), Limit, "a migration to a frozen destination");
        client.Dispose();
        return (result, destination.Accepted);
    }

    [Theory]
    [InlineData(MigrationTechnique.PreCopy)]
    [InlineData(MigrationTechnique.StopAndCopy)]
    public void A_destination_that_stops_reading_fails_the_migration_at_the_stall_timeout_and_the_source_runs_on(MigrationTechnique technique)
    {
        using VirtualMachine vm = RandomFilledVm();
        var options = new MigrationOptions { Technique = technique, StallTimeout = TimeSpan.FromSeconds(1) };
        var (result, accepted) = Migrate(vm, options);
        Assert.True(accepted, "the frozen destination accepted the offer");
        Assert.Equal(MigrationOutcome.Failed, result.Report.Outcome);
        Assert.False(result.VmMoved);
        Assert.Contains("destination stalled", result.Report.Error);
        Assert.Equal(VmRunState.Running, vm.State);
        // It did send something before the buffers filled: the stall came from the frozen peer, not from never starting.
        Assert.True(result.Report.Pages.Sent > 0);
    }

    [Fact]
    public void A_cancel_closes_a_write_the_frozen_destination_does_not_read_long_before_the_stall_timeout()
    {
        using VirtualMachine vm = RandomFilledVm();
        // The stall watch would end this after 5 minutes: the cancel must not wait for it.
        var options = new MigrationOptions { Technique = MigrationTechnique.StopAndCopy, StallTimeout = TimeSpan.FromMinutes(5) };
        using var cancel = new CancellationTokenSource();
        var (client, server) = LoopbackPair.Open(LoopbackMigration.Transport);
        using var destination = new FrozenDestination(server);
        using IDirtyLog log = DirtyLogFactory.Create(vm.Memory, DirtyLogChoice.Software);
        var source = new SourceMigration("m-frozen", vm, client.Stream, options with { PageConnections = 0 }, log, HostIdentity.Local("src"), HostIdentity.Local("dest"));
        SourceResult? result = null;
        var run = new Thread(() => result = source.Run(cancel.Token)) { IsBackground = true };
        run.Start();
        // Wait until the VM is paused and the sender is stuck (pages sent stop growing).
        Bounded.WaitUntil(() => vm.State == VmRunState.Paused && source.Progress.WireBytes > 0, TimeSpan.FromSeconds(30), "the stop-and-copy started");
        long last = -1;
        Bounded.WaitUntil(() =>
        {
            long now = source.Progress.WireBytes;
            bool stuck = now == last;
            last = now;
            Thread.Sleep(200);
            return stuck;
        }, TimeSpan.FromSeconds(30), "the write blocked on the frozen destination");
        Assert.True(run.IsAlive);
        cancel.Cancel();
        // Far below the 5-minute stall timeout; the engine's own bound is its 250 ms grace.
        Assert.True(run.Join(TimeSpan.FromSeconds(20)), "the cancel did not end the migration");
        client.Dispose();
        Assert.NotNull(result);
        Assert.Equal(MigrationOutcome.Cancelled, result.Report.Outcome);
        Assert.Equal("cancelled by request", result.Report.Error);
        Assert.Equal(VmRunState.Running, vm.State);
    }
}
