using Ferry.Engine.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Ferry.Agent.Hosting;

/// <summary>
/// Where the engine's telemetry goes from an agent: its metrics as Prometheus text at
/// <see cref="MetricsPath"/> (unauthenticated, like any scrape target, and read-only), and traces
/// and metrics to an OTLP collector when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (the standard
/// OTEL_* variables configure it further).
/// </summary>
public static class AgentTelemetry
{
    public const string MetricsPath = "/metrics";

    public const string OtlpEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";

    public static void Add(WebApplicationBuilder builder)
    {
        IOpenTelemetryBuilder otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("ferry-agent"))
            .WithMetrics(m => m.AddMeter(MigrationTelemetry.Name).AddPrometheusExporter())
            .WithTracing(t => t.AddSource(MigrationTelemetry.Name));
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(OtlpEndpointVariable)))
        {
            otel.UseOtlpExporter();
        }
    }

    public static void Map(WebApplication app) => app.MapPrometheusScrapingEndpoint(MetricsPath);
}
