using System.Diagnostics;
using System.Text.Json;
using Ferry.Agent.Api;
using Ferry.Agent.Migrations;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// TLS as a user sets it up: `ferry certs` writes the files, `ferry agent --tls-cert --tls-key --tls-ca`
/// uses them, `ferry migrate --tls` does it all for its own agents; an agent whose peer does not
/// match (plain against TLS, another CA) refuses the migration with a log line that says why, and
/// the source VM runs on.
/// </summary>
public sealed class TlsEndToEndTests : IDisposable
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(90);

    private readonly string _dir = Directory.CreateTempSubdirectory("ferry-e2e-tls-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Exit, string Stdout, string Stderr) Ferry(TimeSpan timeout, params string[] args)
    {
        using var p = Process.Start(AgentProcess.FerryStartInfo(args))!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"ferry {string.Join(' ', args)} did not finish within {timeout.TotalSeconds:0} s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>`ferry certs` into a subdirectory: a CA of its own and the named hosts.</summary>
    private string Certs(string subdirectory, params string[] hosts)
    {
        string dir = Path.Combine(_dir, subdirectory);
        var (exit, stdout, stderr) = Ferry(TimeSpan.FromSeconds(60), "certs", "--out", dir, "--hosts", string.Join(',', hosts), "--ip", "127.0.0.1", "--days", "2");
        Assert.True(exit == 0, $"ferry certs: exit {exit}: {stderr}");
        Assert.Contains(Path.Combine(dir, "ca.pem"), stdout);
        return dir;
    }

    private static string[] TlsOptions(string dir, string host) =>
        ["--tls-cert", Path.Combine(dir, host + ".pem"), "--tls-key", Path.Combine(dir, host + "-key.pem"), "--tls-ca", Path.Combine(dir, "ca.pem")];

    private static CreateVmRequest RunningVm(string id) => new() { Id = id, Memory = "32MiB", Workload = "memtouch:rate=5000,wss=8MiB,seed=5", Fill = "random" };

    /// <summary>Starts a migration of a fresh VM from <paramref name="source"/> to <paramref name="destination"/> and waits for its end.</summary>
    private static async Task<MigrationView> MigrateAsync(AgentProcess source, AgentProcess destination, string vmId)
    {
        await source.Client.CreateVmAsync(RunningVm(vmId), default);
        var started = await source.Client.StartMigrationAsync(new StartMigrationRequest { VmId = vmId, Target = destination.Api.ToString() }, default);
        return await Wait.UntilAsync(() => source.Client.GetMigrationAsync(started.Id, default), v => v.State.IsFinished(), Long, "the migration to end");
    }

    private static async Task AssertStillRunning(AgentProcess source, string vmId)
    {
        VmView a = await source.Client.GetVmAsync(vmId, default);
        Assert.Equal("running", a.State);
        await Wait.UntilAsync(() => source.Client.GetVmAsync(vmId, default), v => v.Ops > a.Ops + 500, TimeSpan.FromSeconds(30),
            "the source VM's workload to keep making progress");
    }

    /// <summary>The agent's log once it holds <paramref name="text"/> (bounded).</summary>
    private static async Task<string> LogLine(AgentProcess agent, string text)
    {
        string log = await Wait.UntilAsync(() => Task.FromResult(agent.Log), l => l.Contains(text, StringComparison.Ordinal), TimeSpan.FromSeconds(20), $"the agent to log '{text}'");
        return log.Split('\n').First(l => l.Contains(text, StringComparison.Ordinal)).Trim();
    }

    [Fact]
    public void Migrate_with_tls_completes_with_equal_digests()
    {
        string report = Path.Combine(_dir, "report.json");
        var (exit, stdout, stderr) = Ferry(TimeSpan.FromSeconds(120), "migrate", "--tls", "--memory", "64MiB",
            "--workload", "memtouch:rate=20000,wss=16MiB,pattern=zipf,seed=7", "--baseline", "1s", "--report", report);
        Assert.True(exit == 0, $"exit {exit}; stderr: {stderr}");
        Assert.Contains("migrating over TLS", stderr);
        Assert.Contains("→ match", stdout.ReplaceLineEndings(" "));
        using var json = JsonDocument.Parse(File.ReadAllText(report));
        var root = json.RootElement;
        Assert.Equal("completed", root.GetProperty("outcome").GetString());
        var verification = root.GetProperty("verification");
        Assert.True(verification.GetProperty("digestsMatch").GetBoolean());
        Assert.Equal(verification.GetProperty("sourceDigest").GetString(), verification.GetProperty("destinationDigest").GetString());
        Assert.True(verification.GetProperty("sourceRehashMatches").GetBoolean());
    }

    [Fact]
    public void Migrate_with_tls_and_agents_of_ones_own_is_a_usage_error()
    {
        var (exit, stdout, stderr) = Ferry(TimeSpan.FromSeconds(60), "migrate", "--tls", "--from", "http://127.0.0.1:7100", "--to", "http://127.0.0.1:7200", "--key-file", "x");
        Assert.Equal(2, exit);
        Assert.StartsWith("ferry: --tls is for the two agents ferry migrate starts itself", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal("", stdout.Trim());
    }

    [Fact]
    public async Task Agents_with_certificates_from_ferry_certs_migrate_over_tls()
    {
        string dir = Certs("cluster", "src", "dst");
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key, TlsOptions(dir, "src"));
        using var destination = AgentProcess.Start(key, TlsOptions(dir, "dst"));
        Assert.Contains("certificate CN=dst", await LogLine(destination, "Migrations use TLS"));

        MigrationView done = await MigrateAsync(source, destination, "secure");
        Assert.True(done.State == OutgoingState.Completed, done.Error);
        Assert.True(done.Report!.Verification.DigestsMatch);
        Assert.Equal("running", (await destination.Client.GetVmAsync("secure", default)).State);
    }

    [Fact]
    public async Task A_tls_agent_refuses_a_plain_agents_migration_with_a_clear_log_line()
    {
        string dir = Certs("cluster", "dst");
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var destination = AgentProcess.Start(key, TlsOptions(dir, "dst"));
        await LogLine(source, "Migrations use plain TCP without TLS");

        MigrationView failed = await MigrateAsync(source, destination, "plain");
        Assert.Equal(OutgoingState.Failed, failed.State);
        Assert.Contains("it closed the connection without answering the key handshake, as an agent that requires TLS does (this host runs without TLS)", failed.Error);
        string line = await LogLine(destination, "Refused migration connection");
        Assert.Contains("refused: it did not start TLS (this agent requires TLS; give the source agent --tls-cert, --tls-key and --tls-ca)", line);
        Assert.Empty(await destination.Client.ListVmsAsync(default));
        await AssertStillRunning(source, "plain");
    }

    [Fact]
    public async Task A_plain_agent_refuses_a_tls_agents_migration_with_a_clear_log_line()
    {
        string dir = Certs("cluster", "src");
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key, TlsOptions(dir, "src"));
        using var destination = AgentProcess.Start(key);

        MigrationView failed = await MigrationFails(source, destination, "tls-to-plain");
        Assert.Contains("it closed the connection without answering TLS, as an agent that runs without TLS does (this host requires TLS)", failed.Error);
        Assert.Contains("refused: it started TLS, and this agent runs without TLS", await LogLine(destination, "Refused migration connection"));
        await AssertStillRunning(source, "tls-to-plain");
    }

    [Fact]
    public async Task Agents_with_certificates_from_different_cas_refuse_each_other_with_clear_log_lines()
    {
        string ours = Certs("ours", "src");
        string theirs = Certs("theirs", "dst");
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key, TlsOptions(ours, "src"));
        using var destination = AgentProcess.Start(key, TlsOptions(theirs, "dst"));

        MigrationView failed = await MigrationFails(source, destination, "foreign");
        Assert.Matches("refused: the destination's certificate 'CN=dst' \\(issued by 'CN=Ferry test CA [0-9a-f]+'\\) does not chain to this host's CA", failed.Error);
        string line = await LogLine(destination, "Refused migration connection");
        Assert.Matches("TLS from 127\\.0\\.0\\.1:[0-9]+ refused", line);
        await AssertStillRunning(source, "foreign");
    }

    private static async Task<MigrationView> MigrationFails(AgentProcess source, AgentProcess destination, string vmId)
    {
        MigrationView failed = await MigrateAsync(source, destination, vmId);
        Assert.Equal(OutgoingState.Failed, failed.State);
        Assert.NotNull(failed.Error);
        Assert.Empty(await destination.Client.ListVmsAsync(default));
        return failed;
    }

    [Theory]
    [InlineData("--tls-cert")]
    [InlineData("--tls-cert", "--tls-key")]
    [InlineData("--tls-ca")]
    public void Agent_tls_options_go_together(params string[] given)
    {
        string dir = Certs("partial", "a");
        var paths = new Dictionary<string, string>
        {
            ["--tls-cert"] = Path.Combine(dir, "a.pem"),
            ["--tls-key"] = Path.Combine(dir, "a-key.pem"),
            ["--tls-ca"] = Path.Combine(dir, "ca.pem"),
        };
        using var key = new KeyFile();
        var (exit, _, stderr) = Ferry(TimeSpan.FromSeconds(60), ["agent", "--listen", "127.0.0.1:0", "--key-file", key.Path, .. given.SelectMany(o => new[] { o, paths[o] })]);
        Assert.Equal(2, exit);
        Assert.StartsWith("ferry: --tls-cert, --tls-key and --tls-ca go together (missing: ", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    [Fact]
    public void An_agent_given_a_key_of_another_certificate_says_so_and_exits_with_2()
    {
        string dir = Certs("mismatch", "a", "b");
        using var key = new KeyFile();
        var (exit, _, stderr) = Ferry(TimeSpan.FromSeconds(60), "agent", "--listen", "127.0.0.1:0", "--key-file", key.Path,
            "--tls-cert", Path.Combine(dir, "a.pem"), "--tls-key", Path.Combine(dir, "b-key.pem"), "--tls-ca", Path.Combine(dir, "ca.pem"));
        Assert.Equal(2, exit);
        Assert.StartsWith($"ferry: cannot load the TLS certificate '{Path.Combine(dir, "a.pem")}' with its key '{Path.Combine(dir, "b-key.pem")}'", stderr);
    }

    [Fact]
    public void Certs_never_overwrites_and_says_so()
    {
        string dir = Certs("once", "a");
        string before = File.ReadAllText(Path.Combine(dir, "ca-key.pem"));
        var (exit, _, stderr) = Ferry(TimeSpan.FromSeconds(60), "certs", "--out", dir, "--hosts", "a");
        Assert.Equal(2, exit);
        Assert.Contains("exists, and ferry certs never overwrites", stderr);
        Assert.Equal(before, File.ReadAllText(Path.Combine(dir, "ca-key.pem")));
    }
}
