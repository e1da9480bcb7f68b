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
        string? RetryWindow = null, string? PauseLimit = null, string? ResumeId = null, int? Connections = null, string? StallTimeout = null);

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
        var stallTimeout = new Option<string?>("--stall-timeout") { Description = "fail when nothing moves for this long, e.g. a frozen destination (default: the source agent's, 10s); before the commit the VM runs on at the source" };
        cmd.Options.Add(stallTimeout);
        // Program turns System.CommandLine's Ctrl+C handling off for this command: Interrupt does it (cancel, follow, report).
        cmd.SetAction(async (p, _) =>
        {
            var s = new Settings(
                p.GetValue(memory)!, p.GetValue(vcpus), p.GetValue(workload)!, p.GetValue(fill)!, p.GetValue(technique)!, p.GetValue(dirtyLog)!,
                p.GetValue(maxBandwidth), p.GetValue(downtime), p.GetValue(maxRounds), p.GetValue(dirtyThreshold), p.GetValue(ramMultiple),
                p.GetValue(timeout), p.GetValue(hybridRounds), ParseDuration(p.GetValue(baseline)!, "--baseline"),
                ParseUrl(p.GetValue(from), "--from"), ParseUrl(p.GetValue(to), "--to"), p.GetValue(keyFile), p.GetValue(vm),
                p.GetValue(report)!, p.GetValue(json), p.GetValue(retryWindow), p.GetValue(pauseLimit), p.GetValue(resume), p.GetValue(connections), p.GetValue(stallTimeout));
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
            }
            else
            {
                Validate(s);
            }
            s = s with { ReportPath = ReportFile.Check(s.ReportPath) };
            using var interrupt = Interrupt.Register();
            return s.ResumeId is not null
                ? await ResumeAsync(s, interrupt).ConfigureAwait(false)
                : await RunAsync(s, interrupt, useTls).ConfigureAwait(false);
        });
        Command = cmd;
        return cmd;
    }

    /// <summary>The command <see cref="Create"/> made: Program invokes it without System.CommandLine's signal handling.</summary>
    public static Command? Command { get; private set; }

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
        StallTimeout = s.StallTimeout,
    };

    private static async Task<int> RunAsync(Settings s, Interrupt interrupt, bool tls)
    {
        ChildAgents? children = null;
        AgentClient? source = null;
        string? createdVm = null;
        bool started = false;
        interrupt.Notice = "ferry: interrupted: stopping before the migration starts… (Ctrl+C again to exit at once)";
        try
        {
            Uri from, to;
            ClusterKey key;
            if (s.From is null)
            {
                Status(s, tls ? "starting two agents on loopback, migrating over TLS (certificates from a throwaway CA)…" : "starting two agents on loopback…");
                children = await ChildAgents.StartAsync(tls, interrupt.Token).ConfigureAwait(false);
                interrupt.OnExitNow(children.KillNow);
                from = children.Source;
                to = children.Destination;
                key = ClusterKey.Load(children.KeyFile);
                Status(s, $"source agent {from}, destination agent {to}");
            }
            else
            {
                from = s.From;
                to = s.To!;
                key = LoadKey(s.KeyFile!);
            }
            source = new AgentClient(from, key);
            if (children is null)
            {
                // Agents someone else runs: a wrong URL (a web server, a proxy page: "not a Ferry agent") or key
                // is found before anything is created, and named for the URL it is about.
                await source.InfoAsync(CancellationToken.None).ConfigureAwait(false);
                using var destination = new AgentClient(to, key);
                await destination.InfoAsync(CancellationToken.None).ConfigureAwait(false);
            }
            string vmId;
            if (s.VmId is null)
            {
                interrupt.Token.ThrowIfCancellationRequested();
                Status(s, $"creating a {s.Memory} VM running {s.Workload}…");
                // Not cancelled halfway: a VM created without our knowing its id could not be cleaned up.
                var created = await source.CreateVmAsync(new CreateVmRequest
                {
                    Name = "ferry-demo",
                    Memory = s.Memory,
                    Vcpus = s.Vcpus,
                    Workload = s.Workload,
                    Fill = s.Fill,
                }, CancellationToken.None).ConfigureAwait(false);
                vmId = createdVm = created.Id;
                Status(s, $"VM {vmId} running; measuring its throughput for {s.Baseline.TotalSeconds:0.#} s before migrating…");
                await Task.Delay(s.Baseline, interrupt.Token).ConfigureAwait(false);
            }
            else
            {
                vmId = s.VmId;
            }
            interrupt.Notice = "ferry: cancelling the migration… (Ctrl+C again to exit at once, without waiting for its end)";
            interrupt.Token.ThrowIfCancellationRequested();
            // Not cancelled halfway either: a migration started without our knowing its id could not be cancelled.
            started = true;
            var migration = await source.StartMigrationAsync(ToRequest(s, vmId, to.ToString()), CancellationToken.None).ConfigureAwait(false);
            int exit = await FollowAsync(s, source, migration.Id, vmId, interrupt).ConfigureAwait(false);
            if (exit is not (0 or Interrupt.ExitCode) && children is not null)
            {
                children.KeepLog = true;
                Console.Error.WriteLine($"ferry: agent logs kept in {children.LogFile}");
            }
            return exit;
        }
        catch (OperationCanceledException) when (interrupt.Requested && !started)
        {
            // Interrupted before a migration existed: nothing to cancel; the demo VM we made on someone's agent goes again.
            if (createdVm is not null && children is null && source is not null)
            {
                try
                {
                    await source.DeleteVmAsync(createdVm, CancellationToken.None).ConfigureAwait(false);
                }
                catch (AgentApiException ex)
                {
                    Console.Error.WriteLine($"ferry: could not delete VM {createdVm} created for this run: {ex.Message}");
                }
            }
            Console.Error.WriteLine("ferry: interrupted before the migration started; nothing was migrated");
            return Interrupt.ExitCode;
        }
        catch (InvalidOperationException ex) when (s.From is null && children is null)
        {
            // A child agent that did not start (its log is named in the message).
            Console.Error.WriteLine($"ferry: {ex.Message}");
            return 1;
        }
        catch (TaskCanceledException) when (source is not null)
        {
            // The client's own timeout: the agent took the connection but does not answer.
            Console.Error.WriteLine($"ferry: the agent at {source.BaseAddress} did not answer in time");
            return 1;
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
            source?.Dispose();
            if (children is not null)
            {
                await children.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static ClusterKey LoadKey(string path)
    {
        try
        {
            return ClusterKey.Load(path);
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }
    }

    /// <summary><c>--resume ID</c>: asks the source agent to reconnect a paused post-copy now, then follows it as a new migration would be.</summary>
    private static async Task<int> ResumeAsync(Settings s, Interrupt interrupt)
    {
        ClusterKey key = LoadKey(s.KeyFile!);
        using var source = new AgentClient(s.From!, key);
        interrupt.Notice = "ferry: cancelling the migration… (Ctrl+C again to exit at once, without waiting for its end)";
        MigrationView resumed;
        try
        {
            // Not cancelled halfway: once asked, the resume is followed (and a Ctrl+C then cancels it).
            resumed = await source.ResumeMigrationAsync(s.ResumeId!, CancellationToken.None).ConfigureAwait(false);
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
            return await FollowAsync(s, source, resumed.Id, resumed.VmId, interrupt).ConfigureAwait(false);
        }
        catch (AgentApiException ex)
        {
            Console.Error.WriteLine($"ferry: {ex.Message}");
            return 1;
        }
    }

    /// <summary>
    /// Live progress until the migration ends, then the summary and the report file. Returns the exit
    /// code: 0 completed (also when a Ctrl+C came after the commit point, too late to cancel), 130
    /// cancelled by our Ctrl+C, 1 for any other end, and 1 when the report could not be written.
    /// </summary>
    private static async Task<int> FollowAsync(Settings s, AgentClient source, string id, string vmId, Interrupt interrupt)
    {
        IAnsiConsole console = AnsiConsole.Console;
        bool live = !s.Json && !Console.IsOutputRedirected;
        if (live)
        {
            interrupt.OnExitNow(() => console.Cursor.Show(true));
        }
        var follow = new Following(source, id, interrupt);
        MigrationView final = live
            ? await WatchLiveAsync(console, follow).ConfigureAwait(false)
            : await WatchPlainAsync(s, follow).ConfigureAwait(false);
        MigrationReport? report = final.Report;
        if (report is null)
        {
            // Failed before the engine started (e.g. destination unreachable): no report from the engine.
            report = new MigrationReport { MigrationId = final.Id, Outcome = final.State.ToOutcome(), Error = final.Error, Vm = new VmInfo { Id = vmId } };
        }
        string? writeError = ReportFile.TryWrite(s.ReportPath, JsonSerializer.SerializeToUtf8Bytes(report, AgentJson.Indented));
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
            if (writeError is null)
            {
                console.MarkupLine($"report written to [bold]{Markup.Escape(s.ReportPath)}[/]");
            }
        }
        int exit = report.Outcome switch
        {
            MigrationOutcome.Completed => 0,
            MigrationOutcome.Cancelled when interrupt.Requested => Interrupt.ExitCode,
            _ => 1,
        };
        if (interrupt.Requested)
        {
            Console.Error.WriteLine(report.Outcome switch
            {
                MigrationOutcome.Completed => $"ferry: the cancel came after the commit point: migration {id} completed, the VM runs at the destination",
                MigrationOutcome.Cancelled => $"ferry: migration {id} cancelled",
                var other => $"ferry: migration {id} ended {other.ToString().ToLowerInvariant()} before the cancel took effect",
            });
        }
        if (writeError is not null)
        {
            Console.Error.WriteLine($"ferry: could not write the report to {s.ReportPath}: {writeError}");
            if (exit == 0)
            {
                exit = 1;
            }
        }
        return exit;
    }

    private static void Status(Settings s, string text)
    {
        if (!s.Json)
        {
            Console.Error.WriteLine("ferry: " + text);
        }
    }

    /// <summary>One migration being followed; on the first Ctrl+C the cancel is posted once, then it is watched to its end.</summary>
    private sealed class Following(AgentClient source, string id, Interrupt interrupt)
    {
        private bool _cancelPosted;

        public AgentClient Source => source;

        public string Id => id;

        public Task<MigrationView> FirstAsync() => source.GetMigrationAsync(id, CancellationToken.None);

        public async Task<MigrationView> PollAsync(MigrationView last)
        {
            if (interrupt.Requested && !_cancelPosted && !last.State.IsFinished())
            {
                _cancelPosted = true;
                try
                {
                    return await source.CancelMigrationAsync(id, CancellationToken.None).ConfigureAwait(false);
                }
                catch (AgentApiException ex) when (ex.Status != System.Net.HttpStatusCode.ServiceUnavailable)
                {
                    // Ended meanwhile, or refused: say so and watch on.
                    Console.Error.WriteLine($"ferry: the agent did not take the cancel: {ex.Message}");
                }
            }
            return await source.GetMigrationAsync(id, CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<MigrationView> WatchLiveAsync(IAnsiConsole console, Following follow)
    {
        MigrationView view = await follow.FirstAsync().ConfigureAwait(false);
        await console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask("connecting", maxValue: 100);
                while (true)
                {
                    view = await follow.PollAsync(view).ConfigureAwait(false);
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

    private static async Task<MigrationView> WatchPlainAsync(Settings s, Following follow)
    {
        MigrationView view = await follow.FirstAsync().ConfigureAwait(false);
        DateTime lastLine = DateTime.MinValue;
        bool hinted = false;
        while (true)
        {
            view = await follow.PollAsync(view).ConfigureAwait(false);
            bool done = view.State.IsFinished();
            if (!s.Json && view.Progress is { AwaitingResume: true } && !hinted)
            {
                hinted = true;
                Console.Error.WriteLine($"ferry: post-copy paused and no longer retrying on its own; once the link is back: ferry migrate --resume {follow.Id} --from {follow.Source.BaseAddress} --key-file FILE (Ctrl+C abandons it)");
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
}
