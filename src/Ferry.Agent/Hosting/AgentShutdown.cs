using Ferry.Agent.Migrations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Hosting;

/// <summary>
/// A graceful stop (SIGTERM): the agent refuses new work — VMs, outgoing migrations, incoming
/// offers — and waits, up to <see cref="AgentOptions.ShutdownTimeout"/>, for the migrations in
/// progress, in and out, to end on their own; only then are the rest cancelled. Before, SIGTERM to
/// a destination in post-copy threw the VM it was running away in 0.1 s.
/// </summary>
internal static class AgentShutdown
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);

    public static void Drain(IServiceProvider services)
    {
        var options = services.GetRequiredService<AgentOptions>();
        var manager = services.GetRequiredService<MigrationManager>();
        var listener = services.GetRequiredService<MigrationListener>();
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Ferry.Agent.Shutdown");
        var time = services.GetRequiredService<TimeProvider>();
        services.GetRequiredService<AgentLifecycle>().BeginShutdown();
        int outgoing = manager.InProgress;
        int incoming = listener.InProgress;
        if (outgoing == 0 && incoming == 0)
        {
            return;
        }
        Log.ShutdownWaiting(logger, options.ShutdownTimeout.TotalSeconds, outgoing, incoming);
        long start = time.GetTimestamp();
        while (time.GetElapsedTime(start) < options.ShutdownTimeout)
        {
            if (manager.InProgress == 0 && listener.InProgress == 0)
            {
                Log.ShutdownDrained(logger);
                return;
            }
            Thread.Sleep(Poll);
        }
        Log.ShutdownTimedOut(logger, manager.InProgress, listener.InProgress);
    }
}
