using System.Collections.Concurrent;
using Ferry.Agent.Api;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Hosting;

/// <summary>Rejects, and logs, every API request that does not carry a valid, fresh, unused signature.</summary>
internal sealed class ApiAuthMiddleware
{
    private const int MaxBodyBytes = 1 << 20;
    private readonly RequestDelegate _next;
    private readonly AgentOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, DateTimeOffset> _seenNonces = new(StringComparer.Ordinal);

    public ApiAuthMiddleware(RequestDelegate next, AgentOptions options, ILogger<ApiAuthMiddleware> logger, TimeProvider time)
    {
        _next = next;
        _options = options;
        _logger = logger;
        _time = time;
    }

    public async Task InvokeAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        if (HttpMethods.IsGet(request.Method) && request.Path == AgentTelemetry.MetricsPath)
        {
            // A scrape target: Prometheus cannot sign requests, and the metrics change nothing.
            await _next(context).ConfigureAwait(false);
            return;
        }
        if (request.ContentLength > MaxBodyBytes)
        {
            await Refuse(context, StatusCodes.Status413PayloadTooLarge, "request body too large").ConfigureAwait(false);
            return;
        }
        request.EnableBuffering(MaxBodyBytes);
        byte[] body;
        using (var ms = new MemoryStream())
        {
            await request.Body.CopyToAsync(ms, context.RequestAborted).ConfigureAwait(false);
            body = ms.ToArray();
        }
        request.Body.Position = 0;
        string pathAndQuery = request.Path.Value + request.QueryString.Value;
        DateTimeOffset now = _time.GetUtcNow();
        string? reason = ApiSignature.Verify(_options.Key, request.Headers[ApiSignature.Header], request.Method, pathAndQuery, body, now, out string nonce);
        if (reason is null && !_seenNonces.TryAdd(nonce, now))
        {
            reason = "signature replayed";
        }
        if (reason is not null)
        {
            Log.ApiRefused(_logger, request.Method, pathAndQuery, context.Connection.RemoteIpAddress?.ToString() ?? "?", reason);
            await Refuse(context, StatusCodes.Status401Unauthorized, "unauthorized: " + reason).ConfigureAwait(false);
            return;
        }
        if (_seenNonces.Count > 10_000)
        {
            foreach (var kv in _seenNonces)
            {
                if (now - kv.Value > 2 * ApiSignature.Skew)
                {
                    _seenNonces.TryRemove(kv.Key, out _);
                }
            }
        }
        await _next(context).ConfigureAwait(false);
    }

    private static Task Refuse(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new ErrorBody(message), AgentJson.Options);
    }
}
