namespace Ferry.Engine.Source;

/// <summary>Where a round's or a post-copy send's pages go: the control connection itself, or the page connections.</summary>
internal interface IPageOutput
{
    /// <summary>Starts a series of pages for <paramref name="round"/>; paced ones wait out the bandwidth limit, unpaced ones take it and go.</summary>
    void Begin(int round, bool paced, int maxPages);

    /// <summary>Adds a page. False when the machine moved on meanwhile (stop sending).</summary>
    bool Add(long page);

    /// <summary>Sends what is left of the series. False when the machine moved on.</summary>
    bool Finish();

    /// <summary>Drops what was added but not sent (the machine moved on).</summary>
    void Abandon();

    /// <summary>Writes the round-end marker(s) and waits until every connection has written its own. False when the machine moved on.</summary>
    bool EndRound(int round);

    /// <summary>Waits until everything handed over is on the wire and reported. False when the machine moved on.</summary>
    bool Flush();

    /// <summary>Time spent hashing pages on every connection.</summary>
    double HashMs { get; }
}

/// <summary>What the page outputs need of the migration thread: its pacing, and a wait that keeps feeding the machine.</summary>
internal interface ISendLoop : IBatchGate
{
    /// <summary>Feeds the machine whatever arrives until <paramref name="done"/> holds. False when the machine moved on first.</summary>
    bool WaitUntil(Func<bool> done);

    /// <summary>True while the machine still wants the command in flight.</summary>
    bool StillCurrent { get; }

    /// <summary>Feeds the machine what has arrived, without waiting; then <see cref="StillCurrent"/>.</summary>
    bool Pump();
}
