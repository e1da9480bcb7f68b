using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Progress;

namespace Ferry.Tests.Progress;

/// <summary>
/// The snapshot of a real source machine, driven by scripted events on a virtual clock: what the
/// ETA reads of it (round, rates, the finished rounds) is what the machine did.
/// </summary>
public sealed class SourceProgressTests
{
    private const long GuestPages = (512L << 20) / 4096;
    private const int PageWire = EtaScript.PageWire;
    private const int BatchPages = 256;
    private const int FrameBytes = 24 + 8 + BatchPages * PageWire;
    private const long Limit = 30_000_000;

    private sealed class Driver
    {
        public Driver(MigrationOptions options)
        {
            M = new SourceMigrationMachine(new SourceMachineSettings
            {
                Options = options,
                GuestPages = GuestPages,
                MaxBatchFrameBytes = FrameBytes,
                PushFrameBytes = 24 + 8 + 16 * PageWire,
            }, Now);
            Expect(SourceCommandKind.SendOffer);
            M.CountWireBytes(300);
            Now += TimeSpan.FromMilliseconds(1);
            M.HandleOfferAccepted(new OfferAcceptance { HostName = "dest", PageInstall = "copy" }, Now);
            Expect(SourceCommandKind.StartDirtyLog);
            Expect(SourceCommandKind.SendPages);
        }

        public SourceMigrationMachine M { get; }

        public TimeSpan Now { get; private set; } = TimeSpan.FromSeconds(100);

        public SourceProgress Progress { get; } = new();

        public void Expect(SourceCommandKind kind)
        {
            Assert.True(M.TryPoll(Now, out SourceCommand c), $"no command; expected {kind}");
            Assert.Equal(kind, c.Kind);
        }

        /// <summary>Sends <paramref name="pages"/> of the current round at exactly 30 MB/s on the wire.</summary>
        public void Send(long pages)
        {
            for (long left = pages; left > 0; left -= BatchPages)
            {
                int n = (int)Math.Min(BatchPages, left);
                int bytes = 24 + 8 + n * PageWire;
                Now += TimeSpan.FromSeconds((double)bytes / Limit);
                M.CountWireBytes(bytes);
                M.HandleBatchSent(n, 0, M.Round == 1 ? n : 0, Now);
            }
        }

        /// <summary>Ends the current live round; the guest dirtied <paramref name="dirtied"/> pages meanwhile.</summary>
        public void EndRound(long dirtied)
        {
            M.CountWireBytes(40);
            M.HandleRoundSent(Now);
            M.HandleRoundAcked(M.Round, Now);
            Expect(SourceCommandKind.HarvestDirtyLog);
            M.HandleDirtyHarvested(dirtied, Now);
        }

        public MigrationProgress Snapshot(long populated, bool scanning) =>
            Progress.Snapshot(M, new SourceGuestView(populated, 0, scanning, scanning ? M.RoundSent : 0), Now, PageWire);
    }

    private static MigrationOptions Options(int? maxRounds = null) => new()
    {
        MaxBandwidthBytesPerSecond = Limit,
        PreCopy = new PreCopyOptions { MaxRounds = maxRounds },
    };

    [Fact]
    public void An_idle_512_MiB_guest_at_30_MB_s_shows_17_s_at_the_start_of_round_1_and_counts_down()
    {
        var d = new Driver(Options());
        MigrationProgress start = d.Snapshot(GuestPages, scanning: true);
        Assert.Equal(MigrationPhase.PreCopy, start.Phase);
        Assert.Equal(EtaKind.Estimate, start.EtaKind);
        Assert.Null(start.EtaBound);
        Assert.InRange(start.EtaSeconds!.Value, 17.5, 18.3);

        // Six seconds of sending at the limit: six seconds less (the batch headers make the wire a little slower than 4104 bytes a page).
        TimeSpan t0 = d.Now;
        d.Send((long)(6 * Limit / (double)PageWire));
        MigrationProgress later = d.Snapshot(GuestPages, scanning: true);
        double passed = (d.Now - t0).TotalSeconds;
        Assert.Equal(EtaKind.Estimate, later.EtaKind);
        Assert.InRange(later.EtaSeconds!.Value, start.EtaSeconds.Value - passed - 0.2, start.EtaSeconds.Value - passed + 0.2);
        Assert.Equal(later.EtaSeconds.Value, later.RoundEtaSeconds!.Value, tolerance: 0.2);
    }

    [Fact]
    public void A_working_set_rewritten_every_round_is_flagged_with_its_round_cap_from_the_machine_s_rounds()
    {
        var d = new Driver(Options(maxRounds: 10));
        d.Send(16_384);
        d.EndRound(16_000);
        d.Expect(SourceCommandKind.SendPages);
        MigrationProgress round2 = d.Snapshot(0, scanning: false);
        Assert.Equal(2, round2.Round);
        Assert.NotEqual(EtaKind.NotConverging, round2.EtaKind);

        d.Send(16_000);
        d.EndRound(16_000);
        d.Expect(SourceCommandKind.SendPages);
        d.Send(4_000);
        MigrationProgress round3 = d.Snapshot(0, scanning: false);
        Assert.Equal(3, round3.Round);
        Assert.Equal(EtaKind.NotConverging, round3.EtaKind);
        Assert.Equal(1.0, round3.DirtiedPerSent!.Value, tolerance: 0.02);
        EtaBound b = round3.EtaBound!;
        Assert.Equal(EtaBoundKind.RoundCap, b.Kind);
        Assert.Equal(10, b.AtRound);
        Assert.Equal(PolicyAction.StopAndCopy, b.Then);
        // 12,000 pages left of round 3, then rounds 4-10 of 16,000 (the cap), then the stop-and-copy of 16,000: 140,000 pages at ~7,300 pages/s.
        Assert.InRange(b.Seconds, 124_000 / 7_400.0, 124_000 / 7_200.0);
        Assert.InRange(round3.EtaSeconds!.Value, 140_000 / 7_400.0, 140_000 / 7_200.0);
    }
}
