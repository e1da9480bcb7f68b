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
        builder.WebHost.UseKestrel(k => k.Listen(options.ApiEndpoint));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<AgentEndpoints>();
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
        app.UseMiddleware<ApiAuthMiddleware>();
        AgentTelemetry.Map(app);
        ApiEndpoints.Map(app, "agent-" + Guid.NewGuid().ToString("n")[..8]);
        // Malformed JSON bodies become a 400 with one clear line, not an HTML error page.
        app.Use(async (ctx, next) =>
        {
            try
            {
                await next(ctx).ConfigureAwait(false);
            }
            catch (BadHttpRequestException ex)
            {
                ctx.Response.StatusCode = 400;
                await ctx.Response.WriteAsJsonAsync(new ErrorBody("bad request: " + ex.Message), AgentJson.Options).ConfigureAwait(false);
            }
        });
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
            app.Services.GetRequiredService<MigrationManager>().Dispose();
        });
        return api;
    }

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
