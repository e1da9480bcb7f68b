using System.Runtime.InteropServices;

namespace Ferry.Cli.Commands;

/// <summary>
/// Ctrl+C (SIGINT) and SIGTERM for <c>ferry migrate</c>, in place of System.CommandLine's handling
/// (which cancels the action and exits 130 two seconds later, whatever the action is doing). The
/// first signal prints one line and fires <see cref="Token"/>: the command cancels the migration,
/// follows it to its outcome and writes the report. A second one runs the exit-now actions (stop
/// our child agents) and exits at once with 130.
/// </summary>
internal sealed class Interrupt : IDisposable
{
    public const int ExitCode = 130;

    private readonly CancellationTokenSource _requested = new();
    private readonly List<Action> _beforeExit = [];
    private readonly PosixSignalRegistration[] _registrations;
    private int _signals;

    private Interrupt()
    {
        _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    /// <summary>Fires at the first Ctrl+C or SIGTERM.</summary>
    public CancellationToken Token => _requested.Token;

    public bool Requested => _requested.IsCancellationRequested;

    /// <summary>The line printed at the first signal: what the command does about it.</summary>
    public string Notice { get; set; } = "ferry: interrupted: stopping… (Ctrl+C again to exit at once)";

    public static Interrupt Register() => new();

    /// <summary>Runs before a second signal ends the process (must be quick and must not throw).</summary>
    public void OnExitNow(Action action)
    {
        lock (_beforeExit)
        {
            _beforeExit.Add(action);
        }
    }

    private void Handle(PosixSignalContext context)
    {
        context.Cancel = true;
        int n = Interlocked.Increment(ref _signals);
        if (n == 1)
        {
            Console.Error.WriteLine(Notice);
            // Off the signal thread: token callbacks (the awaits it cancels) must not delay a second signal.
            _ = Task.Run(_requested.Cancel);
            return;
        }
        if (n == 2)
        {
            Console.Error.WriteLine("ferry: interrupted again: exiting without waiting for the outcome");
            Action[] actions;
            lock (_beforeExit)
            {
                actions = [.. _beforeExit];
            }
            foreach (var action in actions)
            {
                try
                {
                    action();
                }
                catch (Exception ex) when (ex is InvalidOperationException or IOException or System.ComponentModel.Win32Exception)
                {
                    // Exiting anyway.
                }
            }
            Environment.Exit(ExitCode);
        }
    }

    public void Dispose()
    {
        foreach (var r in _registrations)
        {
            r.Dispose();
        }
        // _requested is left to the GC: a cancel started by a signal may still be running on the pool.
    }
}
