using System.Runtime.InteropServices;

namespace Ferry.Faults.Tests;

/// <summary>Signals to processes these tests started, by their id: a frozen peer (SIGSTOP), thawed (SIGCONT), a graceful stop (SIGTERM).</summary>
internal static partial class Signals
{
    public const int SigTerm = 15;
    public const int SigCont = 18;
    public const int SigStop = 19;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    public static void Send(int pid, int signal)
    {
        if (Kill(pid, signal) != 0)
        {
            throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>Freezes a process for the scope; thaws it on dispose (so cleanup can end it).</summary>
    public static IDisposable Frozen(int pid)
    {
        Send(pid, SigStop);
        return new Thaw(pid);
    }

    private sealed class Thaw(int pid) : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (!_done)
            {
                _done = true;
                try
                {
                    Send(pid, SigCont);
                }
                catch (InvalidOperationException)
                {
                    // Already gone.
                }
            }
        }
    }

    /// <summary>Resident memory of a process in bytes (VmRSS), from /proc.</summary>
    public static long ResidentBytes(int pid)
    {
        foreach (string line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                string kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException($"no VmRSS for {pid}");
    }
}
