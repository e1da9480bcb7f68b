using System.CommandLine;
using Ferry.Agent.Hosting;
using Ferry.Core.Units;
using Ferry.Protocol.Handshake;
using Microsoft.Extensions.Hosting;

namespace Ferry.Cli.Commands;

/// <summary><c>ferry agent --listen 127.0.0.1:7100 --key-file KEY</c>: runs a host agent until interrupted.</summary>
internal static class AgentCommand
{
    /// <summary>The first line an agent prints on stdout; `ferry migrate` reads it to find child agents.</summary>
    public const string ReadyPrefix = "ferry agent listening on ";

    /// <summary>Hidden: stop when standard input reaches its end (`ferry migrate` holds the other end of its child agents' stdin).</summary>
    public const string StopWhenStdinClosesOption = "--stop-when-stdin-closes";

    public static Command Create()
    {
        var listen = new Option<string>("--listen") { Description = "API address:port (port 0 = any free port)", Required = true };
        var keyFile = new Option<string>("--key-file")
        {
            Description = "file holding the cluster key: a text file (UTF-8, e.g. 64 hex digits) is used as its text, surrounding whitespace ignored, at least 16 characters; "
                + "any other file (binary) byte for byte, at least 32 bytes",
            Required = true,
        };
        var migrationListen = new Option<string?>("--migration-listen") { Description = "address:port for incoming migrations (default: the API address, any free port)" };
        var maxMemory = new Option<string>("--max-vm-memory") { Description = "largest VM this agent accepts", DefaultValueFactory = _ => "64GiB" };
        var dirtyLog = new Option<string>("--dirty-log") { Description = "dirty log for migrations that do not name one: auto, kernel or software", DefaultValueFactory = _ => "auto" };
        var pageInstall = new Option<string>("--page-install") { Description = "how incoming pages are installed, and so how post-copy catches missing pages: auto, uffd (UFFDIO_COPY runs; userfaultfd faults) or copy (plain copies; software present checks)", DefaultValueFactory = _ => "auto" };
        var pauseLimit = new Option<string>("--post-copy-pause-limit") { Description = "how long a VM arriving by post-copy waits for its source after the link broke, before it is stopped and discarded", DefaultValueFactory = _ => "10m" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "this host's certificate (PEM) for TLS on migration connections, both ways; needs --tls-key and --tls-ca (ferry certs writes test ones)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "the private key (PEM) of --tls-cert" };
        var tlsCa = new Option<string?>("--tls-ca") { Description = "the CA (PEM) every peer's certificate must chain to; peers must present one (mutual TLS)" };
        var memoryBudget = new Option<string?>("--memory-budget") { Description = "guest memory this agent holds in all, VMs created here and migrations arriving (counted from their offer); a create or an offer that does not fit is refused (default: physical memory minus a tenth, at least 1 GiB)" };
        var stallTimeout = new Option<string>("--stall-timeout") { Description = "a migration in which nothing moves for this long fails (outgoing: unless the request sets its own; incoming: a silent source is given up and its RAM freed)", DefaultValueFactory = _ => "10s" };
        var shutdownTimeout = new Option<string>("--shutdown-timeout") { Description = "on SIGTERM or Ctrl+C: refuse new work and wait this long for migrations in progress, in and out, before cancelling them", DefaultValueFactory = _ => "60s" };
        var apiName = new Option<string[]>("--api-name") { Description = "a host name clients use for this agent's API besides its addresses and host name (signed requests name the agent they are for); repeatable", AllowMultipleArgumentsPerToken = false };
        var stopWhenStdinCloses = new Option<bool>(StopWhenStdinClosesOption) { Hidden = true };
        var cmd = new Command("agent", "Run a host agent: runs VMs, accepts migrations, serves the control API") { listen, keyFile, migrationListen, maxMemory, dirtyLog, pageInstall, pauseLimit, tlsCert, tlsKey, tlsCa, stopWhenStdinCloses };
        cmd.Options.Add(memoryBudget);
        cmd.Options.Add(stallTimeout);
        cmd.Options.Add(shutdownTimeout);
        cmd.Options.Add(apiName);
        cmd.SetAction(async (parse, ct) =>
        {
            var api = ParseEndpoint(parse.GetValue(listen)!, "--listen");
            var mig = parse.GetValue(migrationListen) is { } m
                ? ParseEndpoint(m, "--migration-listen")
                : new System.Net.IPEndPoint(api.Address, 0);
            if (!UnitParser.TryParseBytes(parse.GetValue(maxMemory)!, out long max, out string err))
            {
                throw new UsageException("--max-vm-memory: " + err);
            }
            if (!Agent.Migrations.MigrationRequestParser.TryParseDirtyLog(parse.GetValue(dirtyLog)!, out var dirtyLogChoice))
            {
                throw new UsageException($"--dirty-log: '{parse.GetValue(dirtyLog)}' is not one of auto, kernel, software");
            }
            if (dirtyLogChoice == Core.Tracking.DirtyLogChoice.Kernel && Native.Linux.HostCapabilities.Current.KernelDirtyLogMissing is { } missing)
            {
                throw new UsageException($"--dirty-log kernel: unavailable on this host: {missing}");
            }
            Core.Migration.PageInstallChoice installChoice = parse.GetValue(pageInstall)!.ToLowerInvariant() switch
            {
                "auto" => Core.Migration.PageInstallChoice.Auto,
                "uffd" => Core.Migration.PageInstallChoice.Uffd,
                "copy" => Core.Migration.PageInstallChoice.Copy,
                var other => throw new UsageException($"--page-install: '{other}' is not one of auto, uffd, copy"),
            };
            try
            {
                Vm.Memory.PageInstallDecision.Decide(installChoice, Native.Linux.HostCapabilities.Current);
            }
            catch (PlatformNotSupportedException ex)
            {
                throw new UsageException("--page-install: " + ex.Message);
            }
            if (!UnitParser.TryParseDuration(parse.GetValue(pauseLimit)!, out TimeSpan pauseLimitValue, out string perr) || pauseLimitValue <= TimeSpan.Zero)
            {
                throw new UsageException("--post-copy-pause-limit: " + (perr.Length > 0 ? perr : "must be positive"));
            }
            ClusterKey key;
            try
            {
                key = ClusterKey.Load(parse.GetValue(keyFile)!);
            }
            catch (ArgumentException ex)
            {
                throw new UsageException(ex.Message);
            }
            Transport.TlsOptions? tls = LoadTls(parse.GetValue(tlsCert), parse.GetValue(tlsKey), parse.GetValue(tlsCa));
            long budget = AgentOptions.DefaultMemoryBudget();
            if (parse.GetValue(memoryBudget) is { } budgetText && (!UnitParser.TryParseBytes(budgetText, out budget, out string berr) || budget <= 0))
            {
                throw new UsageException("--memory-budget: " + (berr.Length > 0 ? berr : "must be positive"));
            }
            TimeSpan stall = PositiveDuration(parse.GetValue(stallTimeout)!, "--stall-timeout");
            TimeSpan shutdown = PositiveDuration(parse.GetValue(shutdownTimeout)!, "--shutdown-timeout");
            var options = new AgentOptions
            {
                ApiEndpoint = api, MigrationEndpoint = mig, Key = key, MaxVmMemoryBytes = max, DefaultDirtyLog = dirtyLogChoice, PageInstall = installChoice,
                PostCopyPauseLimit = pauseLimitValue, Tls = tls, MemoryBudgetBytes = budget, StallTimeout = stall, ShutdownTimeout = shutdown,
                ApiNames = parse.GetValue(apiName) ?? [],
            };
            await using var app = AgentHost.Build(options);
            string url;
            try
            {
                url = await AgentHost.StartAsync(app, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
            {
                Console.Error.WriteLine($"ferry: cannot start the agent: {ex.Message}");
                return 1;
            }
            var endpoints = (AgentEndpoints)app.Services.GetService(typeof(AgentEndpoints))!;
            Console.Out.WriteLine($"{ReadyPrefix}{url} (migrations on {endpoints.Migration})");
            Console.Out.Flush();
            if (parse.GetValue(stopWhenStdinCloses))
            {
                StopWhenStdinCloses(app);
            }
            // Ctrl+C or SIGTERM reaches the host's lifetime or our token, whichever registered first.
            await app.WaitForShutdownAsync(ct).ConfigureAwait(false);
            return 0;
        });
        return cmd;
    }

    private static TimeSpan PositiveDuration(string text, string option) =>
        UnitParser.TryParseDuration(text, out TimeSpan value, out string err) && value > TimeSpan.Zero
            ? value
            : throw new UsageException($"{option}: " + (err.Length > 0 ? err : "must be positive"));

    /// <summary>ADDRESS:PORT of an option; anything else (a port past 65535, no port, no address) is a usage error naming the option.</summary>
    internal static System.Net.IPEndPoint ParseEndpoint(string text, string option)
    {
        int colon = text.LastIndexOf(':');
        if (colon >= 0 && long.TryParse(text.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long port)
            && port > System.Net.IPEndPoint.MaxPort)
        {
            throw new UsageException($"{option} '{text}': port {port} is out of range (0 to {System.Net.IPEndPoint.MaxPort})");
        }
        try
        {
            return AgentOptions.ParseEndpoint(text, option);
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message);
        }
    }

    /// <summary>Reads standard input to its end on a thread of its own (nothing is ever written to it), then stops the agent as Ctrl+C would.</summary>
    private static void StopWhenStdinCloses(Microsoft.AspNetCore.Builder.WebApplication app)
    {
        var thread = new Thread(() =>
        {
            try
            {
                using Stream stdin = Console.OpenStandardInput();
                var buffer = new byte[256];
                while (stdin.Read(buffer) > 0)
                {
                }
            }
            catch (IOException)
            {
                // A broken pipe is an end too.
            }
            try
            {
                app.Lifetime.StopApplication();
            }
            catch (ObjectDisposedException)
            {
                // Already stopped.
            }
        })
        { IsBackground = true, Name = "ferry stdin watch" };
        thread.Start();
    }

    /// <summary>TLS from the three files, or none; two of three is a usage error, as is a file that cannot serve.</summary>
    private static Transport.TlsOptions? LoadTls(string? certificate, string? key, string? authority)
    {
        var given = new (string Option, string? Path)[] { ("--tls-cert", certificate), ("--tls-key", key), ("--tls-ca", authority) };
        if (given.All(g => g.Path is null))
        {
            return null;
        }
        if (given.Where(g => g.Path is null).Select(g => g.Option).ToArray() is { Length: > 0 } missing)
        {
            throw new UsageException($"--tls-cert, --tls-key and --tls-ca go together (missing: {string.Join(", ", missing)})");
        }
        try
        {
            return Transport.Tls.TlsFiles.Load(certificate!, key!, authority!);
        }
        catch (Transport.TransportException ex)
        {
            throw new UsageException(ex.Message);
        }
    }
}
