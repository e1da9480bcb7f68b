using Ferry.Core.Migration;
using Ferry.Core.Policy;

namespace Ferry.Core.Progress;

/// <summary>
/// The remaining time of a live round in flight and of the rounds to come, with the model of the
/// paper (live-migration-performance-perspective, eq. 1): each round re-sends what the guest
/// dirtied during the previous one — with a dirty rate d and a send rate R a share q = d/R of it, a
/// geometric series — until what is left fits the downtime limit and the rest goes in the
/// stop-and-copy. What a round dirties comes from <see cref="DirtyModel"/>: the guest's write rate
/// over the working set the last harvest implies (the series with q growing as the rounds shorten),
/// or, without a write rate, the last round's ratio. The stop rule is the policy's own: a fresh
/// policy of the migration's options is replayed over the finished rounds and then asked about each
/// projected one, so the projection stops exactly where the policy would (converged, round cap, RAM
/// multiple, timeout, hybrid's rounds, auto's switch). When the rounds measurably do not shrink
/// (<see cref="IsNotConverging"/>), they are projected at their current size (the plateau of a
/// working set rewritten every round) up to the bound that ends them.
/// </summary>
public static class PreCopyEta
{
    /// <summary>A round shrank only below this share of the one before (the auto policy's own test, so both call the same thing stalled).</summary>
    public const double NotShrinkingRatio = AutoPolicy.ShrinkFactor;

    /// <summary>Rounds the convergence test looks back over.</summary>
    public const int WindowRounds = 2;

    /// <summary>Seconds of a round after which a count of its dirty pages so far is trusted over the last harvest.</summary>
    public const double MinDirtySeconds = 0.5;

    /// <summary>Projected rounds asked of the policy one by one before giving up (a shrinking series stops long before).</summary>
    private const int MaxSteps = 2_000;

    /// <summary>Rounds of constant size stepped one by one before jumping to the first bound in closed form.</summary>
    private const int PlateauSteps = 4;

    /// <summary>
    /// Not converging, measured over the last rounds: the last round dirtied at least as many pages
    /// as it sent (dirtying ≥ sending), or none of the last <see cref="WindowRounds"/> shrank the next
    /// one below <see cref="NotShrinkingRatio"/> of itself.
    /// </summary>
    /// <param name="ratio">Pages dirtied per page sent over the window (null before the first harvest).</param>
    public static bool IsNotConverging(IReadOnlyList<RoundSample> rounds, out double? ratio)
    {
        ratio = null;
        int n = Math.Min(WindowRounds, rounds.Count);
        if (n == 0)
        {
            return false;
        }
        long sent = 0;
        long dirtied = 0;
        bool allStalled = n == WindowRounds;
        for (int i = rounds.Count - n; i < rounds.Count; i++)
        {
            sent += rounds[i].PagesSent;
            dirtied += rounds[i].PagesDirtied;
            allStalled &= rounds[i].DirtiedPerSent >= NotShrinkingRatio;
        }
        ratio = sent > 0 ? (double)dirtied / sent : null;
        return rounds[^1].DirtiedPerSent >= 1 || allStalled;
    }

    /// <summary>The estimate while a live round runs, at the given send rate.</summary>
    internal static EtaResult Estimate(EtaInput x, SendRate rate)
    {
        double r = rate.PagesPerSecond;
        long left = Math.Max(0, x.RoundPages - x.RoundPagesSent);
        double roundLeft = left / r;
        bool hybrid = x.Options.Technique == MigrationTechnique.Hybrid;
        bool notConverging = IsNotConverging(x.LiveRounds, out double? ratio) && !hybrid;

        DirtyModel model;
        bool boundedOnly = false;
        double duration = x.RoundSeconds + roundLeft;
        if (x.RoundPagesDirtied is { } soFar && x.RoundSeconds >= MinDirtySeconds)
        {
            // The dirty set of the round in flight, counted by the driver: fitted like a harvest.
            var sample = new RoundSample(x.RoundPagesSent, soFar, x.RoundWireBytes, x.RoundSeconds);
            model = x.GuestWritesPerSecond > 0
                ? DirtyModel.Fit(x.GuestWritesPerSecond, sample)
                : new DirtyModel(soFar / x.RoundSeconds, double.PositiveInfinity, 0);
        }
        else if (x.LiveRounds.Count > 0)
        {
            RoundSample last = x.LiveRounds[^1];
            model = DirtyModel.Fit(x.GuestWritesPerSecond, last);
        }
        else if (x.GuestWritesPerSecond > 0)
        {
            if (x.PopulatedPages <= 0)
            {
                // The scan has not begun: neither round 1's size nor a bound on what it dirties is known.
                return EtaResult.Unknown;
            }
            // Round 1, before the first harvest: only the guest's write rate is known. Writes spread
            // uniformly over every populated page dirty the most distinct pages a round can see, so a
            // working set of all of them is an upper bound.
            model = new DirtyModel(x.GuestWritesPerSecond, Math.Max(x.PopulatedPages, x.RoundPages), 0);
            boundedOnly = true;
        }
        else
        {
            model = new DirtyModel(0, 0, 0);
        }
        if (boundedOnly && model.Dirtied(x.RoundPages, duration) >= NotShrinkingRatio * x.RoundPages && !hybrid)
        {
            // The bound alone does not say whether the rounds will shrink: only the first harvest will.
            return new EtaResult(EtaKind.Unknown, null, RoundSeconds: roundLeft);
        }

        IMigrationPolicy policy = x.Options.CreatePolicy();
        Replay(policy, x);
        var s = new Projected
        {
            Round = x.Round,
            Pages = x.RoundPages,
            Duration = duration,
            RoundWire = x.RoundWireBytes + left * rate.WireBytesPerPage,
            Elapsed = x.ElapsedSeconds + roundLeft,
            Wire = x.WireBytes + left * rate.WireBytesPerPage,
            At = roundLeft,
        };
        s.Dirtied = Dirtied(model, s.Pages, s.Duration, notConverging, inFlight: true, x.GuestPages);
        for (int step = 0; step < MaxSteps; step++)
        {
            RoundObservation o = s.Observation(x.RamBytes);
            PolicyDecision decision = policy.Decide(o);
            if (decision.Action != PolicyAction.Continue)
            {
                EtaBound? bound = Classify(x, o, decision.Action, s.At);
                double end = s.At + (decision.Action == PolicyAction.Abort ? 0 : s.Dirtied / r);
                EtaKind kind = notConverging && bound is not null ? EtaKind.NotConverging : EtaKind.Estimate;
                return new EtaResult(kind, end, bound, roundLeft, ratio);
            }
            // The next round sends what this one dirtied.
            double pages = s.Dirtied;
            double seconds = pages / r;
            double dirtied = Dirtied(model, pages, seconds, notConverging, inFlight: false, x.GuestPages);
            long rounds = 1;
            if (step >= PlateauSteps && Math.Abs(dirtied - pages) <= 1e-3 * pages)
            {
                // A working set's fixed point (or a plateau): treat it as exactly that.
                dirtied = pages;
                // Rounds of constant size from here: jump to the round end where the first bound holds.
                rounds = RoundsToBound(x, s, seconds, pages * rate.WireBytesPerPage);
                if (rounds == long.MaxValue)
                {
                    break;
                }
            }
            s.Round = (int)Math.Min(int.MaxValue, s.Round + rounds);
            s.Pages = pages;
            s.Duration = seconds;
            s.RoundWire = pages * rate.WireBytesPerPage;
            s.Elapsed += rounds * seconds;
            s.Wire += rounds * s.RoundWire;
            s.At += rounds * seconds;
            s.Dirtied = dirtied;
        }
        // No stop rule ends these rounds (or none within reach): say what is known, and no time.
        return new EtaResult(notConverging ? EtaKind.NotConverging : EtaKind.Unknown, null, null, roundLeft, ratio);
    }

    /// <summary>
    /// Pages a round of <paramref name="pages"/> taking <paramref name="seconds"/> dirties, by the
    /// model. When the rounds do not shrink, the round in flight dirties at least what it sends and
    /// every later one exactly that (a plateau: a ratio a hair above 1 compounded over hundreds of
    /// projected rounds would be noise turned into growth).
    /// </summary>
    private static double Dirtied(in DirtyModel model, double pages, double seconds, bool notConverging, bool inFlight, long guestPages)
    {
        double d = Math.Min(guestPages, model.Dirtied(pages, seconds));
        if (!notConverging)
        {
            return d;
        }
        return inFlight ? Math.Min(guestPages, Math.Max(pages, d)) : pages;
    }

    /// <summary>Feeds the finished rounds to the fresh policy, so a policy with memory (auto's stall count) is where the real one is.</summary>
    private static void Replay(IMigrationPolicy policy, EtaInput x)
    {
        IReadOnlyList<RoundSample> rounds = x.LiveRounds;
        if (rounds.Count == 0)
        {
            return;
        }
        // The rounds tile the time and the bytes up to the start of the current one: walk back from there.
        var ends = new (double Elapsed, long Wire)[rounds.Count];
        double elapsed = x.ElapsedSeconds - x.RoundSeconds;
        long wire = x.WireBytes - x.RoundWireBytes;
        for (int i = rounds.Count - 1; i >= 0; i--)
        {
            ends[i] = (elapsed, wire);
            elapsed -= rounds[i].Seconds;
            wire -= rounds[i].WireBytes;
        }
        // Only auto remembers anything (how many rounds in a row did not shrink, which resets on a shrink):
        // its stall rounds and one before them rebuild that. Pre-copy and hybrid decide from the round alone.
        int from = x.Options.Technique == MigrationTechnique.Auto ? Math.Max(0, rounds.Count - (x.Options.AutoStallRounds + 1)) : rounds.Count;
        for (int i = from; i < rounds.Count; i++)
        {
            RoundSample r = rounds[i];
            policy.Decide(new RoundObservation(i + 1, r.PagesSent, r.WireBytes, r.PagesDirtied, Time(r.Seconds), Time(ends[i].Elapsed), ends[i].Wire, x.RamBytes));
        }
    }

    /// <summary>Rounds of constant size after <paramref name="s"/> until the first of the round cap, hybrid's rounds, the RAM multiple or the timeout holds (long.MaxValue: none ever does).</summary>
    private static long RoundsToBound(EtaInput x, in Projected s, double roundSeconds, double roundWire)
    {
        PreCopyOptions p = x.Options.PreCopy;
        bool hybrid = x.Options.Technique == MigrationTechnique.Hybrid;
        double n = double.PositiveInfinity;
        int? cap = hybrid ? x.Options.HybridRounds : p.MaxRounds;
        if (cap is { } c)
        {
            n = Math.Min(n, c - s.Round);
        }
        if (!hybrid && p.MaxRamMultiple is { } k && roundWire > 0)
        {
            n = Math.Min(n, Math.Ceiling((k * x.RamBytes - s.Wire) / roundWire));
        }
        if (p.Timeout is { } timeout && roundSeconds > 0)
        {
            n = Math.Min(n, Math.Ceiling((timeout.TotalSeconds - s.Elapsed) / roundSeconds));
        }
        return double.IsFinite(n) ? (long)Math.Clamp(n, 1, int.MaxValue) : long.MaxValue;
    }

    /// <summary>Which bound ended the live rounds (null: they converged).</summary>
    private static EtaBound? Classify(EtaInput x, in RoundObservation o, PolicyAction then, double seconds)
    {
        PreCopyOptions p = x.Options.PreCopy;
        var bound = new EtaBound { Then = then, AtRound = o.Round, Seconds = seconds };
        if (x.Options.Technique == MigrationTechnique.Hybrid)
        {
            return then == PolicyAction.Abort
                ? bound with { Kind = EtaBoundKind.Timeout, Limit = p.Timeout?.TotalSeconds ?? 0 }
                : bound with { Kind = EtaBoundKind.HybridRounds, Limit = x.Options.HybridRounds };
        }
        bool timedOut = p.Timeout is { } t && o.Elapsed >= t;
        if (then == PolicyAction.Abort || (timedOut && x.Options.Technique != MigrationTechnique.Auto))
        {
            return bound with { Kind = EtaBoundKind.Timeout, Limit = p.Timeout?.TotalSeconds ?? 0 };
        }
        bool converged = (p.DowntimeLimit is { } limit && o.RemainingBytes <= o.BandwidthBytesPerSecond * limit.TotalSeconds)
            || (p.DirtyPageThreshold is { } threshold && o.PagesDirtied < threshold);
        if (converged)
        {
            return null;
        }
        bool auto = x.Options.Technique == MigrationTechnique.Auto;
        if (auto && timedOut)
        {
            return bound with { Kind = EtaBoundKind.Timeout, Limit = p.Timeout!.Value.TotalSeconds };
        }
        if (auto && o.BandwidthBytesPerSecond > 0 && o.DirtyPagesPerSecond * Paging.PageSize.Bytes >= o.BandwidthBytesPerSecond)
        {
            return bound with { Kind = EtaBoundKind.AutoSwitch, Limit = x.Options.AutoStallRounds };
        }
        if (p.MaxRounds is { } cap && o.Round >= cap)
        {
            return bound with { Kind = EtaBoundKind.RoundCap, Limit = cap };
        }
        if (p.MaxRamMultiple is { } k && o.TotalWireBytes >= k * o.RamBytes)
        {
            return bound with { Kind = EtaBoundKind.RamMultiple, Limit = k, LimitBytes = (long)(k * o.RamBytes) };
        }
        return bound with { Kind = EtaBoundKind.AutoSwitch, Limit = x.Options.AutoStallRounds };
    }

    private static TimeSpan Time(double seconds) => TimeSpan.FromSeconds(Math.Clamp(double.IsFinite(seconds) ? seconds : 0, 0, 1e9));

    /// <summary>
    /// What a round dirties. With the guest's write rate w known, the writable working set of Clark
    /// et al. (2005): w writes a second spread over a hot set of W pages dirty W(1 − e^(−wτ/W))
    /// distinct pages in τ seconds, W fitted to the last harvest. A set too large to matter (W → ∞)
    /// dirties wτ: a constant dirty rate, and the rounds are the paper's geometric series with
    /// q = w/R. Short rounds see fewer repeated writes than long ones, so q grows as the rounds shrink,
    /// up to the plateau of a set rewritten every round — what a constant ratio misses (it took round 1
    /// of a 512 MiB guest with a 64 MiB hot set, q = 0.12, for round 2's 0.49). Without a write rate the
    /// last round's ratio q = dirtied ÷ sent is kept.
    /// </summary>
    internal readonly record struct DirtyModel(double WritesPerSecond, double WorkingSetPages, double Ratio)
    {
        public double Dirtied(double pages, double seconds)
        {
            if (WritesPerSecond <= 0)
            {
                return Ratio * pages;
            }
            double writes = WritesPerSecond * Math.Max(0, seconds);
            return double.IsPositiveInfinity(WorkingSetPages) ? writes : WorkingSetPages * -double.ExpM1(-writes / WorkingSetPages);
        }

        /// <summary>The model that dirties what <paramref name="last"/> did, at the write rate <paramref name="writesPerSecond"/> (≤ 0: unknown, keep the ratio).</summary>
        public static DirtyModel Fit(double writesPerSecond, RoundSample last)
        {
            double ratio = last.DirtiedPerSent ?? 0;
            double writes = writesPerSecond * last.Seconds;
            if (writesPerSecond <= 0 || writes <= 0 || last.PagesDirtied <= 0)
            {
                return new DirtyModel(0, 0, ratio);
            }
            double d = last.PagesDirtied;
            if (d >= 0.999 * writes)
            {
                // (Almost) every write found a clean page: no working set in sight.
                return new DirtyModel(writesPerSecond, double.PositiveInfinity, ratio);
            }
            // W(1 − e^(−n/W)) rises from d(1 − e^(−n/d)) at W = d toward n as W grows: bisect in log space.
            double lo = d;
            double hi = d;
            while (hi * -double.ExpM1(-writes / hi) < d && hi < 1e15)
            {
                hi *= 2;
            }
            for (int i = 0; i < 60; i++)
            {
                double mid = Math.Sqrt(lo * hi);
                if (mid * -double.ExpM1(-writes / mid) < d)
                {
                    lo = mid;
                }
                else
                {
                    hi = mid;
                }
            }
            return new DirtyModel(writesPerSecond, hi, ratio);
        }
    }

    /// <summary>A projected round at its end.</summary>
    private struct Projected
    {
        public int Round;
        public double Pages;
        public double Dirtied;
        public double Duration;
        public double RoundWire;
        public double Elapsed;
        public double Wire;

        /// <summary>Seconds from the snapshot to this round's end.</summary>
        public double At;

        public readonly RoundObservation Observation(long ramBytes) => new(
            Round, (long)Pages, (long)RoundWire, (long)Math.Ceiling(Dirtied), Time(Duration), Time(Elapsed), (long)Math.Min(Wire, long.MaxValue), ramBytes);
    }
}
