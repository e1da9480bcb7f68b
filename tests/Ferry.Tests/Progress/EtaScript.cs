using Ferry.Core.Machines.Source;
using Ferry.Core.Migration;
using Ferry.Core.Policy;
using Ferry.Core.Progress;

namespace Ferry.Tests.Progress;

/// <summary>
/// Scripted progress: a pre-copy whose every rate is known, so the true remaining time at any
/// instant is known too. Every round sends its pages at a constant rate; the guest dirties what
/// <c>dirtied(round, pages, seconds)</c> says while it runs; the migration's own policy decides after
/// each round; the stop-and-copy sends the last harvest at the same rate. Snapshots are taken every
/// <c>every</c> seconds of virtual time: no clock is read.
/// </summary>
internal static class EtaScript
{
    /// <summary>A page's wire cost: 4096 bytes and its 8-byte entry header.</summary>
    public const int PageWire = 4096 + 8;

    public sealed record Sample(double At, EtaInput Input, double Remaining);

    public sealed record Run(IReadOnlyList<Sample> Samples, double Total, int LiveRounds, PolicyDecision Stop);

    private sealed record Round(long Pages, long Dirtied, double Start, double Seconds, long WireStart);

    public static Run PreCopy(MigrationOptions options, long guestPages, long populated, double pagesPerSecond, Func<int, long, double, long> dirtied,
        double every, double guestWritesPerSecond = 0, bool writesKnownAfterRound1 = false, Func<double, long>? dirtiedSoFar = null)
    {
        IMigrationPolicy policy = options.CreatePolicy();
        var rounds = new List<Round>();
        double t = 0;
        long wire = 0;
        long pages = populated;
        PolicyDecision decision;
        while (true)
        {
            double seconds = pages / pagesPerSecond;
            long dirt = dirtied(rounds.Count + 1, pages, seconds);
            long roundWire = pages * PageWire;
            decision = policy.Decide(new RoundObservation(rounds.Count + 1, pages, roundWire, dirt, TimeSpan.FromSeconds(seconds),
                TimeSpan.FromSeconds(t + seconds), wire + roundWire, guestPages * 4096));
            rounds.Add(new Round(pages, dirt, t, seconds, wire));
            t += seconds;
            wire += roundWire;
            if (decision.Action != PolicyAction.Continue)
            {
                break;
            }
            pages = dirt;
            Assert.True(rounds.Count < 100_000, "the scripted policy never stops");
        }
        double final = decision.Action == PolicyAction.Abort ? 0 : rounds[^1].Dirtied / pagesPerSecond;
        double total = t + final;
        var samples = new List<Sample>();
        for (int k = 0; k * every < total; k++)
        {
            double at = k * every;
            samples.Add(new Sample(at, At(at), total - at));
        }
        return new Run(samples, total, rounds.Count, decision);

        EtaInput At(double at)
        {
            int i = rounds.FindIndex(r => at >= r.Start && at < r.Start + r.Seconds);
            var common = new EtaInput
            {
                Options = options,
                GuestPages = guestPages,
                ElapsedSeconds = at,
                PageWireBytes = PageWire,
            };
            if (i >= 0)
            {
                Round r = rounds[i];
                double into = at - r.Start;
                long sent = Math.Min(r.Pages, (long)Math.Round(into * pagesPerSecond));
                return common with
                {
                    Phase = MigrationPhase.PreCopy,
                    RoundKind = RoundKind.Live,
                    Round = i + 1,
                    RoundPages = r.Pages,
                    RoundPagesSent = sent,
                    RoundWireBytes = sent * PageWire,
                    RoundSeconds = into,
                    WireBytes = r.WireStart + sent * PageWire,
                    LiveRounds = Samples(i),
                    GuestWritesPerSecond = i == 0 || writesKnownAfterRound1 ? guestWritesPerSecond : 0,
                    PopulatedPages = i == 0 ? populated : 0,
                    RoundPagesDirtied = dirtiedSoFar?.Invoke(into),
                };
            }
            // The stop-and-copy (or, after a switch, post-copy) of the last harvest.
            Round last = rounds[^1];
            double since = at - t;
            long done = Math.Min(last.Dirtied, (long)Math.Round(since * pagesPerSecond));
            bool postCopy = decision.Action == PolicyAction.SwitchToPostCopy;
            return common with
            {
                Phase = postCopy ? MigrationPhase.PostCopy : MigrationPhase.StopAndCopy,
                RoundKind = postCopy ? RoundKind.PostCopy : RoundKind.StopAndCopy,
                Round = rounds.Count + 1,
                RoundPages = last.Dirtied,
                RoundPagesSent = done,
                RoundWireBytes = done * PageWire,
                RoundSeconds = since,
                WireBytes = wire + done * PageWire,
                LiveRounds = Samples(rounds.Count),
                PostCopyPages = postCopy ? last.Dirtied - done : 0,
            };
        }

        List<RoundSample> Samples(int count) =>
            rounds.Take(count).Select(r => new RoundSample(r.Pages, r.Dirtied, r.Pages * PageWire, r.Seconds)).ToList();
    }
}
