using System.Diagnostics;
using System.Text;
using Ferry.Agent.Client;
using Ferry.Protocol.Handshake;

namespace Ferry.EndToEnd.Tests;

/// <summary>A `ferry agent` child process on loopback; killed (by the id we started) on dispose.</summary>
internal sealed class AgentProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log;

    private AgentProcess(Process process, Uri api, ClusterKey key, StringBuilder log)
    {
        _process = process;
        _log = log;
        Api = api;
        Client = new AgentClient(api, key);
    }

    public Uri Api { get; }

    public AgentClient Client { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public static string FerryDll => Path.Combine(AppContext.BaseDirectory, "ferry.dll");

    public static ProcessStartInfo FerryStartInfo(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(FerryDll);
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return psi;
    }

    public static AgentProcess Start(KeyFile key, params string[] options)
    {
        var process = Process.Start(FerryStartInfo(["agent", "--listen", "127.0.0.1:0", "--key-file", key.Path, .. options]))!;
        var log = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (log)
                {
                    log.AppendLine(e.Data);
                }
            }
        };
        process.BeginErrorReadLine();
        var readLine = process.StandardOutput.ReadLineAsync();
        if (!readLine.Wait(TimeSpan.FromSeconds(60)) || readLine.Result is not { } line || !line.StartsWith("ferry agent listening on ", StringComparison.Ordinal))
        {
            process.Kill();
            throw new InvalidOperationException("agent did not start: " + log);
        }
        _ = process.StandardOutput.ReadToEndAsync();
        var url = new Uri(line["ferry agent listening on ".Length..].Split(' ')[0]);
        return new AgentProcess(process, url, key.Key, log);
    }

    /// <summary>SIGKILL, as a crashing host would.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
    }

    public void Dispose()
    {
        Client.Dispose();
        Kill();
        _process.Dispose();
    }
}

/// <summary>A temporary cluster key file, deleted on dispose.</summary>
internal sealed class KeyFile : IDisposable
{
    public KeyFile()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ferry-test-" + Guid.NewGuid().ToString("n") + ".key");
        string text = ClusterKey.Generate();
        File.WriteAllText(Path, text);
        Key = new ClusterKey(Encoding.UTF8.GetBytes(text));
    }

    public string Path { get; }

    public ClusterKey Key { get; }

    public void Dispose() => File.Delete(Path);
}
