using System.Diagnostics;
using System.Net;
using Ferry.Protocol.Handshake;
using Ferry.Transport.Tls;

namespace Ferry.Cli.Commands;

/// <summary>
/// Two `ferry agent` child processes on loopback with a fresh cluster key, for `ferry migrate`
/// with no --from/--to; with TLS, also a throwaway CA and a certificate for each. Their logs go to
/// a file; they are ended (by the ids we started) on dispose, and the key and certificates deleted.
/// Each runs in a session of its own (setsid), so a Ctrl+C at the terminal reaches `ferry migrate`
/// alone, which cancels the migration through them; and each stops by itself when its standard
/// input closes, that is when `ferry migrate` is gone however it ended.
/// </summary>
internal sealed class ChildAgents : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Long enough for any one `ferry migrate` (the default --timeout is 1 h, a paused post-copy may wait 10 min more).</summary>
    private static readonly TimeSpan CertificateValidity = TimeSpan.FromDays(2);

    private readonly List<Process> _processes = [];
    private readonly string _dir;

    /// <summary>The throwaway CA and certificates (with --tls); deleted on dispose even when the log is kept.</summary>
    private readonly string _tlsDir;
    private bool _tls;

    private ChildAgents(string dir)
    {
        _dir = dir;
        KeyFile = Path.Combine(dir, "cluster.key");
        LogFile = Path.Combine(dir, "agents.log");
        _tlsDir = Path.Combine(dir, "tls");
    }

    public string KeyFile { get; }

    public string LogFile { get; }

    /// <summary>Keep the log directory after dispose (set when something failed, so the log can be read).</summary>
    public bool KeepLog { get; set; }

    public Uri Source { get; private set; } = null!;

    public Uri Destination { get; private set; } = null!;

    /// <param name="tls">Start both agents with TLS on migration connections, certificates from a CA made for this run.</param>
    public static async Task<ChildAgents> StartAsync(bool tls, CancellationToken ct)
    {
        string dir = Directory.CreateTempSubdirectory("ferry-").FullName;
        var agents = new ChildAgents(dir);
        try
        {
            await File.WriteAllTextAsync(agents.KeyFile, ClusterKey.Generate(), ct).ConfigureAwait(false);
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(agents.KeyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
            if (tls)
            {
                agents.WriteCertificates();
            }
            var a = agents.StartOne("source", ct);
            var b = agents.StartOne("destination", ct);
            agents.Source = await a.ConfigureAwait(false);
            agents.Destination = await b.ConfigureAwait(false);
            return agents;
        }
        catch
        {
            await agents.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task<Uri> StartOne(string role, CancellationToken ct)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find the ferry executable");
        string? setsid = FindSetsid();
        var psi = new ProcessStartInfo(setsid ?? exe)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (setsid is not null)
        {
            // A child of ours is never a process group leader, so setsid execs in place: the id we hold is the agent's.
            psi.ArgumentList.Add(exe);
        }
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(ChildAgents).Assembly.Location);
        }
        foreach (string arg in new[] { "agent", "--listen", "127.0.0.1:0", "--key-file", KeyFile, AgentCommand.StopWhenStdinClosesOption })
        {
            psi.ArgumentList.Add(arg);
        }
        if (_tls)
        {
            foreach (string arg in new[] { "--tls-cert", Path.Combine(_tlsDir, role + ".pem"), "--tls-key", Path.Combine(_tlsDir, role + "-key.pem"), "--tls-ca", Path.Combine(_tlsDir, "ca.pem") })
            {
                psi.ArgumentList.Add(arg);
            }
        }
        var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start a child agent");
        lock (_processes)
        {
            _processes.Add(process);
        }
        var log = new StreamWriter(new FileStream(LogFile, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (log)
                {
                    log.WriteLine($"[{role}] {e.Data}");
                }
            }
        };
        process.BeginErrorReadLine();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(StartTimeout);
        while (true)
        {
            string? line;
            try
            {
                line = await process.StandardOutput.ReadLineAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new InvalidOperationException($"the {role} agent did not start within {StartTimeout.TotalSeconds:0} s (log: {LogFile})");
            }
            if (line is null)
            {
                throw new InvalidOperationException($"the {role} agent exited at start (log: {LogFile})");
            }
            if (line.StartsWith(AgentCommand.ReadyPrefix, StringComparison.Ordinal))
            {
                string url = line[AgentCommand.ReadyPrefix.Length..].Split(' ')[0];
                // Keep draining stdout so the child never blocks on a full pipe.
                _ = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
                return new Uri(url);
            }
        }
    }

    /// <summary>util-linux <c>setsid</c>, when the host has it (without it, a terminal's Ctrl+C also reaches the agents).</summary>
    private static string? FindSetsid()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "setsid");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <summary>
    /// For a second Ctrl+C, which exits at once: SIGKILL to both agents without waiting, and their
    /// directory (the key, the certificates, the log) removed.
    /// </summary>
    public void KillNow()
    {
        Process[] processes;
        lock (_processes)
        {
            processes = [.. _processes];
        }
        foreach (var p in processes)
        {
            try
            {
                p.Kill();
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // Already gone.
            }
        }
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Exiting anyway; a leftover temp directory is all it costs.
        }
    }

    /// <summary>A CA for this run alone (its key is never used again) and one certificate per agent, named by role.</summary>
    private void WriteCertificates()
    {
        Directory.CreateDirectory(_tlsDir);
        using var ca = TestAuthority.Create("ferry migrate CA " + Path.GetFileName(_dir), CertificateValidity);
        ca.WriteAuthority(_tlsDir);
        foreach (string role in new[] { "source", "destination" })
        {
            using var host = ca.Issue(role, [IPAddress.Loopback], CertificateValidity);
            TestAuthority.WriteHost(_tlsDir, role, host);
        }
        _tls = true;
    }

    public async ValueTask DisposeAsync()
    {
        Process[] processes;
        lock (_processes)
        {
            processes = [.. _processes];
        }
        foreach (var p in processes)
        {
            try
            {
                if (!p.HasExited)
                {
                    p.Kill();
                }
                await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is InvalidOperationException or OperationCanceledException or System.ComponentModel.Win32Exception)
            {
                // Already gone, or did not die in time; nothing more we may do to it.
            }
            p.Dispose();
        }
        try
        {
            File.Delete(KeyFile);
            if (Directory.Exists(_tlsDir))
            {
                Directory.Delete(_tlsDir, recursive: true);
            }
            if (!KeepLog)
            {
                Directory.Delete(_dir, recursive: true);
            }
        }
        catch (IOException)
        {
            // A leftover temp file is not worth failing the command for.
        }
    }
}
