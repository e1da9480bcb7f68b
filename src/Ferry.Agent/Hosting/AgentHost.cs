using Ferry.Agent.Api;
using Ferry.Agent.Migrations;
using Ferry.Agent.Vms;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Hosting;

/// <summary>Builds and runs one host agent: the API on Kestrel, the migration listener, the VM registry.</summary>
public static class AgentHost
{
    public static WebApplication Build(AgentOptions options, Action<ILoggingBuilder>? logging = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        // A failed start is reported by `ferry agent` in one line; the host's own multi-line dump adds nothing.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        logging?.Invoke(builder.Logging);
        builder.WebHost.UseKestrel(k =>
        {
            k.Listen(options.ApiEndpoint);
            // Kestrel's own cap too (chunked bodies included), behind the auth middleware's.
            k.Limits.MaxRequestBodySize = ApiAuthMiddleware.MaxBodyBytes;
            k.Limits.MaxRequestHeadersTotalSize = 32 << 10;
        });
        // On SIGTERM the agent waits for migrations in progress (AgentShutdown) before the host stops.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.ShutdownTimeout + TimeSpan.FromSeconds(15));
        // A body that is not the JSON an endpoint expects is a 400 with the documented {"error": ...}, not an empty 400.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<AgentEndpoints>();
        builder.Services.AddSingleton<AgentLifecycle>();
        builder.Services.AddSingleton<VmRegistry>();
        builder.Services.AddSingleton<MigrationManager>();
        builder.Services.AddSingleton<MigrationListener>();
        AgentTelemetry.Add(builder);
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = AgentJson.Options.PropertyNamingPolicy;
            foreach (var c in AgentJson.Options.Converters)
            {
                o.SerializerOptions.Converters.Add(c);
            }
        });
        var app = builder.Build();
        // Malformed JSON bodies (and oversized ones) become one clear line in the documented error body.
        app.Use(async (ctx, next) =>
        {
            try
            {
                await next(ctx).ConfigureAwait(false);
            }
            catch (BadHttpRequestException ex) when (!ctx.Response.HasStarted)
            {
                ctx.Response.StatusCode = ex.StatusCode;
                await ctx.Response.WriteAsJsonAsync(new ErrorBody("bad request: " + BadRequestText(ex)), AgentJson.Options).ConfigureAwait(false);
            }
        });
        app.UseMiddleware<ApiAuthMiddleware>();
        AgentTelemetry.Map(app);
        ApiEndpoints.Map(app, "agent-" + Guid.NewGuid().ToString("n")[..8]);
        return app;
    }

    /// <summary>Starts the agent; returns once it listens, with the API URL it bound.</summary>
    public static async Task<string> StartAsync(WebApplication app, CancellationToken ct)
    {
        // Compile the migration path now rather than inside the first migration's downtime.
        await Task.Run(() => MigrationWarmup.Run(app.Services.GetRequiredService<AgentOptions>().Tls), ct).ConfigureAwait(false);
        await app.StartAsync(ct).ConfigureAwait(false);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        string api = addresses.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal);
        var endpoints = app.Services.GetRequiredService<AgentEndpoints>();
        endpoints.Api = api;
        // Resolving the listener binds the migration port.
        app.Services.GetRequiredService<MigrationListener>();
        LogMigrationTransport(app.Services.GetRequiredService<AgentOptions>(), app.Services.GetRequiredService<ILogger<MigrationListener>>());
        app.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.Register(() =>
        {
            AgentShutdown.Drain(app.Services);
            app.Services.GetRequiredService<MigrationManager>().Dispose();
        });
        return api;
    }

    /// <summary>The reason without ASP.NET's parameter plumbing ("Failed to read parameter \"CreateVmRequest req\" from the request body as JSON").</summary>
    private static string BadRequestText(BadHttpRequestException ex) =>
        ex.InnerException is System.Text.Json.JsonException json
            ? "the body is not valid JSON for this request: " + json.Message.Split(" Path:")[0].Split(" LineNumber:")[0]
            : ex.Message;

    /// <summary>Says once, at start, whether migrations here are TLS: a mixed cluster refuses every migration across the divide.</summary>
    private static void LogMigrationTransport(AgentOptions options, ILogger logger)
    {
        if (options.Tls is { } tls)
        {
            Log.MigrationsOverTls(logger, tls.Certificate.Subject, tls.Certificate.NotAfter.ToUniversalTime(), tls.Authority.Subject,
                tls.RequireClientCertificate ? "mutual: sources must present one too" : "sources need not present one");
        }
        else
        {
            Log.MigrationsWithoutTls(logger);
        }
    }
}
