using System.Diagnostics;
using System.Globalization;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// A `ferry` command as a process, for tests that act on it while it runs: its output line by line,
/// bounded waits for a line, signals to its id alone, and the child processes it started. Killed
/// (by its id, with its children) on dispose if it still runs.
/// </summary>
internal sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _stdout = [];
    private readonly List<string> _stderr = [];
    private readonly TaskCompletionSource _outputClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _streamsOpen = 2;

    private CliProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Add(_stdout, e.Data);
        process.ErrorDataReceived += (_, e) => Add(_stderr, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;

    public string Stdout => Text(_stdout);

    public string Stderr => Text(_stderr);

    public string[] StderrLines
    {
        get
        {
            lock (_stderr)
            {
                return [.. _stderr];
            }
        }
    }

    public static CliProcess Start(params string[] args) => new(Process.Start(AgentProcess.FerryStartInfo(args))!);

    /// <summary>Runs to its end (bounded) and returns the exit code.</summary>
    public static (int Exit, string Stdout, string Stderr) Run(TimeSpan timeout, params string[] args)
    {
        using var p = Start(args);
        int exit = p.WaitForExit(timeout);
        return (exit, p.Stdout, p.Stderr);
    }

    private void Add(List<string> lines, string? line)
    {
        if (line is null)
        {
            if (Interlocked.Decrement(ref _streamsOpen) == 0)
            {
                _outputClosed.TrySetResult();
            }
            return;
        }
        lock (lines)
        {
            lines.Add(line);
            Monitor.PulseAll(lines);
        }
    }

    private static string Text(List<string> lines)
    {
        lock (lines)
        {
            return string.Join('\n', lines);
        }
    }

    /// <summary>The first stderr line matching <paramref name="match"/>, waiting up to <paramref name="timeout"/>; fails the test otherwise.</summary>
    public string WaitForStderr(Func<string, bool> match, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        lock (_stderr)
        {
            while (true)
            {
                if (_stderr.FirstOrDefault(match) is { } line)
                {
                    return line;
                }
                TimeSpan left = timeout - sw.Elapsed;
                if (left <= TimeSpan.Zero || _process.HasExited && Volatile.Read(ref _streamsOpen) == 0)
                {
                    Assert.Fail($"no stderr line showing {what} within {timeout.TotalSeconds:0} s (exited: {_process.HasExited}); stderr so far:\n{string.Join('\n', _stderr)}");
                }
                Monitor.Wait(_stderr, left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200));
            }
        }
    }

    /// <summary>Waits for the end (bounded) and all its output; fails the test, killing it, if it runs on.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            KillTree();
            Assert.Fail($"ferry did not exit within {timeout.TotalSeconds:0} s; stderr:\n{Stderr}");
        }
        _outputClosed.Task.Wait(TimeSpan.FromSeconds(10));
        return _process.ExitCode;
    }

    /// <summary>Sends <paramref name="signal"/> (INT, TERM…) to this process alone, as `kill -INT PID` does.</summary>
    public void Signal(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-" + signal, Pid.ToString(CultureInfo.InvariantCulture) }, UseShellExecute = false })!;
        Assert.True(kill.WaitForExit(10_000), "kill did not return");
        Assert.Equal(0, kill.ExitCode);
    }

    /// <summary>The live processes whose parent is this one, each with its start time (so a reused id is not mistaken for it).</summary>
    public IReadOnlyList<ProcessIdentity> Children() => ProcessIdentity.ChildrenOf(Pid);

    private void KillTree()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Gone meanwhile.
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            KillTree();
            _process.WaitForExit(10_000);
        }
        _process.Dispose();
    }
}

/// <summary>A process by id and start time, read from /proc.</summary>
internal readonly record struct ProcessIdentity(int Pid, long StartTicks)
{
    /// <summary>Fields of /proc/PID/stat after the command name: state, parent, … start time (field 22).</summary>
    private static string[]? Stat(int pid)
    {
        try
        {
            string text = File.ReadAllText($"/proc/{pid}/stat");
            return text[(text.LastIndexOf(')') + 2)..].Split(' ');
        }
        catch (IOException)
        {
            return null;
        }
    }

    public static IReadOnlyList<ProcessIdentity> ChildrenOf(int parent)
    {
        var children = new List<ProcessIdentity>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
                && Stat(pid) is { } f && f[0] != "Z" && int.Parse(f[1], CultureInfo.InvariantCulture) == parent)
            {
                children.Add(new ProcessIdentity(pid, long.Parse(f[19], CultureInfo.InvariantCulture)));
            }
        }
        return children;
    }

    /// <summary>Still running: the same process (same start time) exists and is not a zombie.</summary>
    public bool IsAlive => Stat(Pid) is { } f && f[0] != "Z" && long.Parse(f[19], CultureInfo.InvariantCulture) == StartTicks;

    /// <summary>Cleanup after a failed test: SIGKILL to this process if it is still the one we saw.</summary>
    public void KillIfAlive()
    {
        if (!IsAlive)
        {
            return;
        }
        try
        {
            using var p = Process.GetProcessById(Pid);
            p.Kill();
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Gone meanwhile.
        }
    }

    /// <summary>Waits (bounded) until every one of <paramref name="processes"/> is gone; fails the test naming the survivors.</summary>
    public static void AssertAllGone(IEnumerable<ProcessIdentity> processes, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        ProcessIdentity[] alive;
        while ((alive = [.. processes.Where(p => p.IsAlive)]).Length > 0)
        {
            if (sw.Elapsed > timeout)
            {
                Assert.Fail($"processes still running {timeout.TotalSeconds:0} s after ferry exited: {string.Join(", ", alive.Select(p => p.Pid))}");
            }
            Thread.Sleep(100);
        }
    }
}
