namespace Ferry.Agent.Hosting;

/// <summary>
/// Whether this agent still takes new work. Set once, when a graceful stop begins
/// (<see cref="AgentShutdown"/>); creates, outgoing migrations and incoming offers all ask here.
/// </summary>
public sealed class AgentLifecycle
{
    /// <summary>What a refused piece of new work is told.</summary>
    public const string ShuttingDownMessage = "this agent is shutting down: it starts no new work";

    private volatile bool _shuttingDown;

    public bool ShuttingDown => _shuttingDown;

    public void BeginShutdown() => _shuttingDown = true;
}

/// <summary>New work asked of an agent that is stopping (the API answers 503).</summary>
public sealed class AgentShuttingDownException() : Exception(AgentLifecycle.ShuttingDownMessage);
