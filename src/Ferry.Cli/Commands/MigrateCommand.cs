using Ferry.Agent.Migrations;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Ferry.Agent.Api;
using Ferry.Agent.Client;
using Ferry.Cli.Rendering;
using Ferry.Core.Migration;
using Ferry.Core.Reporting;
using Ferry.Core.Units;
using Ferry.Core.Workloads;
using Ferry.Protocol.Handshake;
using Spectre.Console;

namespace Ferry.Cli.Commands;

/// <summary>
/// <c>ferry migrate</c>: the main job. With no --from/--to it starts two agents on loopback,
/// creates a VM running the workload, measures a baseline, migrates it with live progress,
/// prints the summary and writes the JSON report.
/// </summary>
internal static class MigrateCommand
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);

    private sealed record Settings(
        string Memory, int Vcpus, string Workload, string Fill, string Technique, string DirtyLog, string? MaxBandwidth, string? DowntimeLimit,
        int? MaxRounds, long? DirtyThreshold, double? MaxRamMultiple, string? Timeout, int? HybridRounds, TimeSpan Baseline,
        Uri? From, Uri? To, string? KeyFile, string? VmId, string ReportPath, bool Json,
        string? RetryWindow = null, string? PauseLimit = null, string? ResumeId = null, int? Connections = null);

    public static Command Create()
    {
        var memory = new Option<string>("--memory") { Description = "guest RAM of the VM to create", DefaultValueFactory = _ => "1GiB" };
        var vcpus = new Option<int>("--vcpus") { Description = "vCPUs of the VM to create", DefaultValueFactory = _ => 1 };
        var workload = new Option<string>("--workload") { Description = "guest program: idle, or memtouch:rate=PAGES/S,wss=SIZE,pattern=uniform|sequential|hot-cold|zipf,content=zero|text|random|mix,seed=N", DefaultValueFactory = _ => "memtouch:rate=20000,wss=256MiB" };
        var fill = new Option<string>("--fill") { Description = "initial RAM content: none, zero, text, random, mix", DefaultValueFactory = _ => "none" };
        var technique = new Option<string>("--technique") { Description = "stop-and-copy, precopy, postcopy, hybrid (pre-copy rounds, then post-copy) or auto (post-copy once pre-copy will not converge)", DefaultValueFactory = _ => "precopy" };
        var hybridRounds = new Option<int?>("--hybrid-rounds") { Description = "hybrid: pre-copy rounds before post-copy (default 1)" };
        var dirtyLog = new Option<string>("--dirty-log") { Description = "dirty tracking: auto (cheaper for the workload on this host), kernel (userfaultfd + PAGEMAP_SCAN) or software", DefaultValueFactory = _ => "auto" };
        var maxBandwidth = new Option<string?>("--max-bandwidth") { Description = "sender bandwidth limit, e.g. 125MB/s or 1Gbit/s (default: unlimited)" };
        var downtime = new Option<string?>("--downtime-limit") { Description = "stop when the rest fits in this pause at the measured bandwidth (default 300ms)" };
        var maxRounds = new Option<int?>("--max-rounds") { Description = "stop after this many live rounds (default: no cap)" };
        var dirtyThreshold = new Option<long?>("--dirty-threshold") { Description = "stop when fewer pages than this were dirtied in a round" };
        var ramMultiple = new Option<double?>("--max-ram-multiple") { Description = "stop once this many times RAM was sent (default 30)" };
        var timeout = new Option<string?>("--timeout") { Description = "abort a migration that has not stopped after this long (default 1h)" };
        var baseline = new Option<string>("--baseline") { Description = "how long the new VM runs before migrating (baseline for degradation)", DefaultValueFactory = _ => "3s" };
        var from = new Option<string?>("--from") { Description = "source agent URL (default: start two agents here)" };
        var to = new Option<string?>("--to") { Description = "destination agent URL" };
        var keyFile = new Option<string?>("--key-file") { Description = "cluster key file (needed with --from/--to)" };
        var vm = new Option<string?>("--vm") { Description = "migrate this existing VM on --from instead of creating one" };
        var report = new Option<string>("--report") { Description = "where to write the JSON report", DefaultValueFactory = _ => "ferry-report.json" };
        var json = new Option<bool>("--json") { Description = "print the report as JSON instead of the progress display and tables" };
        var retryWindow = new Option<string?>("--post-copy-retry-window") { Description = "post-copy: how long the source reconnects on its own after the link broke (default 30s)" };
        var pauseLimit = new Option<string?>("--post-copy-pause-limit") { Description = "post-copy: how long a paused post-copy is kept before it fails (default 10m)" };
        var resume = new Option<string?>("--resume") { Description = "resume the paused post-copy migration with this id on --from (needs --key-file), then follow it to the end" };
        var connections = new Option<int?>("--connections") { Description = "page connections beside the control connection, 0 to 8 (default 2): page batches are spread over them; offers, state and post-copy page requests keep the control connection" };
        var tls = new Option<bool>("--tls") { Description = "TLS between the two agents this command starts (a throwaway CA and certificates, deleted afterwards); not with --from/--to, whose agents have their own --tls-* options" };
        var cmd = new Command("migrate", "Migrate a running VM between two agents, with live progress and a report")
        {
            memory, vcpus, workload, fill, technique, dirtyLog, maxBandwidth, downtime, maxRounds, dirtyThreshold, ramMultiple, timeout,
            hybridRounds, baseline, from, to, keyFile, vm, report, json, retryWindow, pauseLimit, resume,
        };
        cmd.Options.Add(tls);
        cmd.Options.Add(connections);
        cmd.SetAction(async (p, ct) =>
        {
            var s = new Settings(
                p.GetValue(memory)!, p.GetValue(vcpus), p.GetValue(workload)!, p.GetValue(fill)!, p.GetValue(technique)!, p.GetValue(dirtyLog)!,
                p.GetValue(maxBandwidth), p.GetValue(downtime), p.GetValue(maxRounds), p.GetValue(dirtyThreshold), p.GetValue(ramMultiple),
                p.GetValue(timeout), p.GetValue(hybridRounds), ParseDuration(p.GetValue(baseline)!, "--baseline"),
                ParseUrl(p.GetValue(from), "--from"), ParseUrl(p.GetValue(to), "--to"), p.GetValue(keyFile), p.GetValue(vm),
                p.GetValue(report)!, p.GetValue(json), p.GetValue(retryWindow), p.GetValue(pauseLimit), p.GetValue(resume), p.GetValue(connections));
            if (s.Connections is < 0 or > MigrationOptions.MaxPageConnections)
            {
                throw new UsageException($"--connections must be 0 to {MigrationOptions.MaxPageConnections}");
            }
            bool useTls = p.GetValue(tls);
            if (useTls && (s.From is not null || s.ResumeId is not null))
            {
                // Agents someone else started already chose TLS or not with their own --tls-cert/--tls-key/--tls-ca.
                throw new UsageException("--tls is for the two agents ferry migrate starts itself; agents given by --from/--to use TLS when started with --tls-cert, --tls-key and --tls-ca");
            }
            if (s.ResumeId is not null)
            {
                ValidateResume(s);
                return await ResumeAsync(s, ct).ConfigureAwait(false);
            }
            Validate(s);
            return await RunAsync(s, ct, useTls).ConfigureAwait(false);
        });
        return cmd;
    }

    private static TimeSpan ParseDuration(string text, string option) =>
        UnitParser.TryParseDuration(text, out var d, out string e) ? d : throw new UsageException($"{option}: {e}");

    private static Uri? ParseUrl(string? text, string option) =>
        text is null ? null
        : Uri.TryCreate(text, UriKind.Absolute, out var u) && u.Scheme is "http" or "https" ? u
        : throw new UsageException($"{option}: '{text}' is not an agent URL (example: http://127.0.0.1:7100)");

    /// <summary>A resume names an existing migration on one agent: nothing else to create or choose.</summary>
    private static void ValidateResume(Settings s)
    {
        if (string.IsNullOrWhiteSpace(s.ResumeId))
        {
            throw new UsageException("--resume: give the migration id (as listed by the source agent)");
        }
        if (s.From is null)
        {
            throw new UsageException("--resume needs --from, the URL of the source agent that runs the migration");
        }
        if (s.KeyFile is null)
        {
            throw new UsageException("--key-file is needed with --resume");
        }
        if (s.To is not null || s.VmId is not null)
        {
            throw new UsageException("--resume continues a migration that already knows its VM and destination; drop --to/--vm");
        }
        CheckReportPath(s.ReportPath);
    }

    /// <summary>Checks every value before anything starts, so a typo costs nothing.</summary>
    private static void Validate(Settings s)
    {
        if (!UnitParser.TryParseBytes(s.Memory, out long mem, out string e1))
        {
            throw new UsageException("--memory: " + e1);
        }
        if (mem < 4096)
        {
            throw new UsageException("--memory: at least one page (4096 bytes)");
        }
        if (s.Vcpus is < 1 or > 64)
        {
            throw new UsageException("--vcpus: between 1 and 64");
        }
        if (!WorkloadSpec.TryParse(s.Workload, out _, out string e2))
        {
            throw new UsageException("--workload: " + e2);
        }
        if (s.Fill is not ("none" or "zero" or "text" or "random" or "mix"))
        {
            throw new UsageException($"--fill: '{s.Fill}' is not one of none, zero, text, random, mix");
        }
        if (!MigrationTechniqueNames.TryParse(s.Technique, out _))
        {
            throw new UsageException($"--technique: '{s.Technique}' is not one of {MigrationTechniqueNames.AllNames}");
        }
        try
        {
            Agent.Migrations.MigrationRequestParser.Parse(ToRequest(s, "x", "http://x"));
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }
        if ((s.From is null) != (s.To is null))
        {
            throw new UsageException("--from and --to go together");
        }
        if (s.From is not null && s.KeyFile is null)
        {
            throw new UsageException("--key-file is needed with --from/--to");
        }
        if (s.VmId is not null && s.From is null)
        {
            throw new UsageException("--vm names a VM on --from; give --from/--to too");
        }
        CheckReportPath(s.ReportPath);
    }

    private static void CheckReportPath(string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
        {
            throw new UsageException($"--report: directory '{dir}' does not exist");
        }
    }

    private static StartMigrationRequest ToRequest(Settings s, string vmId, string target) => new()
    {
        VmId = vmId,
        Target = target,
        Technique = s.Technique,
        DirtyLog = s.DirtyLog,
        MaxBandwidth = s.MaxBandwidth,
        DowntimeLimit = s.DowntimeLimit,
        MaxRounds = s.MaxRounds,
        HybridRounds = s.HybridRounds,
        DirtyPageThreshold = s.DirtyThreshold,
        MaxRamMultiple = s.MaxRamMultiple,
        Timeout = s.Timeout,
        PostCopyRetryWindow = s.RetryWindow,
        PostCopyPauseLimit = s.PauseLimit,
        PageConnections = s.Connections,
    };

    private static async Task<int> RunAsync(Settings s, CancellationToken ct, bool tls)
    {
        ChildAgents? children = null;
        try
        {
            Uri from, to;
            ClusterKey key;
            if (s.From is null)
            {
                Status(s, tls ? "starting two agents on loopback, migrating over TLS (certificates from a throwaway CA)…" : "starting two agents on loopback…");
                children = await ChildAgents.StartAsync(tls, ct).ConfigureAwait(false);
                from = children.Source;
                to = children.Destination;
                key = ClusterKey.Load(children.KeyFile);
                Status(s, $"source agent {from}, destination agent {to}");
            }
            else
            {
                from = s.From;
                to = s.To!;
                try
                {
                    key = ClusterKey.Load(s.KeyFile!);
                }
                catch (ArgumentException ex)
                {
                    throw new UsageException(ex.Message);
                }
            }
            using var source = new AgentClient(from, key);
            string vmId;
            if (s.VmId is null)
            {
                Status(s, $"creating a {s.Memory} VM running {s.Workload}…");
                var created = await source.CreateVmAsync(new CreateVmRequest
                {
                    Name = "ferry-demo",
                    Memory = s.Memory,
                    Vcpus = s.Vcpus,
                    Workload = s.Workload,
                    Fill = s.Fill,
                }, ct).ConfigureAwait(false);
                vmId = created.Id;
                Status(s, $"VM {vmId} running; measuring its throughput for {s.Baseline.TotalSeconds:0.#} s before migrating…");
                await Task.Delay(s.Baseline, ct).ConfigureAwait(false);
            }
            else
            {
                vmId = s.VmId;
            }
            var started = await source.StartMigrationAsync(ToRequest(s, vmId, to.ToString()), ct).ConfigureAwait(false);
            int exit = await FollowAsync(s, source, started.Id, vmId, ct).ConfigureAwait(false);
            if (exit != 0 && children is not null)
            {
                children.KeepLog = true;
                Console.Error.WriteLine($"ferry: agent logs kept in {children.LogFile}");
            }
            return exit;
        }
        catch (AgentApiException ex)
        {
            if (children is not null)
            {
                children.KeepLog = true;
            }
            Console.Error.WriteLine($"ferry: {ex.Message}" + (children is not null ? $" (agent logs: {children.LogFile})" : ""));
            return 1;
        }
        finally
        {
            if (children is not null)
            {
                await children.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary><c>--resume ID</c>: asks the source agent to reconnect a paused post-copy now, then follows it as a new migration would be.</summary>
    private static async Task<int> ResumeAsync(Settings s, CancellationToken ct)
    {
        ClusterKey key;
        try
        {
            key = ClusterKey.Load(s.KeyFile!);
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }
        using var source = new AgentClient(s.From!, key);
        MigrationView resumed;
        try
        {
            resumed = await source.ResumeMigrationAsync(s.ResumeId!, ct).ConfigureAwait(false);
        }
        catch (AgentApiException ex) when (ex.Status is System.Net.HttpStatusCode.NotFound or System.Net.HttpStatusCode.Conflict)
        {
            // The id or the moment is wrong, not the agent: a usage error.
            throw new UsageException("--resume: " + ex.Message);
        }
        catch (AgentApiException ex)
        {
            Console.Error.WriteLine($"ferry: {ex.Message}");
            return 1;
        }
        Status(s, $"resuming post-copy of migration {resumed.Id} (VM {resumed.VmId} to {resumed.Target})…");
        try
        {
            return await FollowAsync(s, source, resumed.Id, resumed.VmId, ct).ConfigureAwait(false);
        }
        catch (AgentApiException ex)
        {
            Console.Error.WriteLine($"ferry: {ex.Message}");
            return 1;
        }
    }

    /// <summary>Live progress until the migration ends, then the summary and the report file. Returns the exit code.</summary>
    private static async Task<int> FollowAsync(Settings s, AgentClient source, string id, string vmId, CancellationToken ct)
    {
        IAnsiConsole console = AnsiConsole.Console;
        bool live = !s.Json && !Console.IsOutputRedirected;
        MigrationView final = live
            ? await WatchLiveAsync(console, source, id, ct).ConfigureAwait(false)
            : await WatchPlainAsync(s, source, id, ct).ConfigureAwait(false);
        MigrationReport? report = final.Report;
        if (report is null)
        {
            // Failed before the engine started (e.g. destination unreachable): no report from the engine.
            report = new MigrationReport { MigrationId = final.Id, Outcome = final.State.ToOutcome(), Error = final.Error, Vm = new VmInfo { Id = vmId } };
        }
        WriteReport(s.ReportPath, report);
        if (s.Json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(report, AgentJson.Indented));
        }
        else if (final.Report is null)
        {
            Console.Error.WriteLine($"ferry: migration {final.State.ToWire()}: {final.Error}");
        }
        else
        {
            SummaryRenderer.Render(console, report);
            console.MarkupLine($"report written to [bold]{Markup.Escape(Path.GetFullPath(s.ReportPath))}[/]");
        }
        return report.Outcome == MigrationOutcome.Completed ? 0 : 1;
    }

    private static void Status(Settings s, string text)
    {
        if (!s.Json)
        {
            Console.Error.WriteLine("ferry: " + text);
        }
    }

    private static async Task<MigrationView> WatchLiveAsync(IAnsiConsole console, AgentClient source, string id, CancellationToken ct)
    {
        MigrationView view = await source.GetMigrationAsync(id, CancellationToken.None).ConfigureAwait(false);
        await console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask("connecting", maxValue: 100);
                while (true)
                {
                    view = await PollAsync(source, id, view, ct).ConfigureAwait(false);
                    if (view.Progress is { } p)
                    {
                        task.Description = Markup.Escape(ProgressLine.Describe(p));
                        task.Value = Math.Min(100, p.RamSentFraction * 100);
                    }
                    if (view.State.IsFinished())
                    {
                        if (view.State == OutgoingState.Completed)
                        {
                            task.Value = 100;
                        }
                        task.StopTask();
                        return;
                    }
                    await Task.Delay(PollInterval, CancellationToken.None).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);
        return view;
    }

    private static async Task<MigrationView> WatchPlainAsync(Settings s, AgentClient source, string id, CancellationToken ct)
    {
        MigrationView view = await source.GetMigrationAsync(id, CancellationToken.None).ConfigureAwait(false);
        DateTime lastLine = DateTime.MinValue;
        bool hinted = false;
        while (true)
        {
            view = await PollAsync(source, id, view, ct).ConfigureAwait(false);
            bool done = view.State.IsFinished();
            if (!s.Json && view.Progress is { AwaitingResume: true } && !hinted)
            {
                hinted = true;
                Console.Error.WriteLine($"ferry: post-copy paused and no longer retrying on its own; once the link is back: ferry migrate --resume {id} --from {source.BaseAddress} --key-file FILE (Ctrl+C abandons it)");
            }
            if (!s.Json && view.Progress is { } p && (done || DateTime.UtcNow - lastLine > TimeSpan.FromSeconds(1)))
            {
                lastLine = DateTime.UtcNow;
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{p.ElapsedSeconds,6:0.0}s] {ProgressLine.Describe(p)}"));
            }
            if (done)
            {
                return view;
            }
            await Task.Delay(PollInterval, CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>One poll; on Ctrl+C asks the agent to cancel and keeps watching until it has.</summary>
    private static async Task<MigrationView> PollAsync(AgentClient source, string id, MigrationView last, CancellationToken ct)
    {
        if (ct.IsCancellationRequested && !last.State.IsFinished())
        {
            return await source.CancelMigrationAsync(id, CancellationToken.None).ConfigureAwait(false);
        }
        return await source.GetMigrationAsync(id, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Writes via a temporary file, so a full disk never leaves a truncated report behind.</summary>
    private static void WriteReport(string path, MigrationReport report)
    {
        string full = Path.GetFullPath(path);
        string tmp = full + ".tmp";
        try
        {
            File.WriteAllBytes(tmp, JsonSerializer.SerializeToUtf8Bytes(report, AgentJson.Indented));
            File.Move(tmp, full, overwrite: true);
        }
        catch (IOException ex)
        {
            try
            {
                File.Delete(tmp);
            }
            catch (IOException)
            {
                // Nothing more to clean.
            }
            Console.Error.WriteLine($"ferry: could not write the report to {full}: {ex.Message}");
        }
    }
}
