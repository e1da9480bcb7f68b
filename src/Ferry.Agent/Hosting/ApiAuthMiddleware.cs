using System.Collections.Concurrent;
using System.Net;
using Ferry.Agent.Api;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Ferry.Agent.Hosting;

/// <summary>
/// Rejects, and logs, every API request that does not carry a valid, fresh, unused signature made
/// for this agent. What a stranger can make the agent do is bounded: the signature header is
/// checked (form, time) before a byte of the body is read; a body is read only up to the limit,
/// chunked or not; and only a few bodies are read at once. Before, 40 concurrent unsigned 27 MiB
/// chunked requests took the agent from 1.0 to 3.7 GB.
/// </summary>
internal sealed class ApiAuthMiddleware
{
    public const int MaxBodyBytes = 1 << 20;

    /// <summary>Request bodies read (and buffered) at once before their signature is verified; more wait, briefly, then get 503.</summary>
    public const int ConcurrentBodies = 8;

    private static readonly TimeSpan BodySlotWait = TimeSpan.FromSeconds(2);

    private readonly RequestDelegate _next;
    private readonly AgentOptions _options;
    private readonly AgentEndpoints _endpoints;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, DateTimeOffset> _seenNonces = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _bodySlots = new(ConcurrentBodies, ConcurrentBodies);
    private AgentNames? _names;

    public ApiAuthMiddleware(RequestDelegate next, AgentOptions options, AgentEndpoints endpoints, ILogger<ApiAuthMiddleware> logger, TimeProvider time)
    {
        _next = next;
        _options = options;
        _endpoints = endpoints;
        _logger = logger;
        _time = time;
    }

    private AgentNames Names => _names ??= new AgentNames(
        Uri.TryCreate(_endpoints.Api, UriKind.Absolute, out Uri? api) ? api.Port : _options.ApiEndpoint.Port,
        _options.ApiEndpoint.Address, _options.ApiNames);

    public async Task InvokeAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        if (HttpMethods.IsGet(request.Method) && request.Path == AgentTelemetry.MetricsPath)
        {
            // A scrape target: Prometheus cannot sign requests, and the metrics change nothing.
            await _next(context).ConfigureAwait(false);
            return;
        }
        string pathAndQuery = request.Path.Value + request.QueryString.Value;
        string remote = context.Connection.RemoteIpAddress?.ToString() ?? "?";
        DateTimeOffset now = _time.GetUtcNow();
        // Everything that can be checked without the body is checked first: nothing is read for a request that fails here.
        string? reason = ApiSignature.Parse(request.Headers[ApiSignature.Header], now, out ApiSignature.Parsed parsed);
        string authority = request.Host.Value ?? "";
        if (reason is null && !Names.Accepts(authority, context.Connection.LocalIpAddress))
        {
            reason = $"request is for '{authority}', not this agent";
        }
        if (reason is not null)
        {
            await Unauthorized(context, request, pathAndQuery, remote, reason).ConfigureAwait(false);
            return;
        }
        if (request.ContentLength > MaxBodyBytes)
        {
            await Refuse(context, StatusCodes.Status413PayloadTooLarge, $"request body too large (limit {MaxBodyBytes} bytes)").ConfigureAwait(false);
            return;
        }
        if (!await _bodySlots.WaitAsync(BodySlotWait, context.RequestAborted).ConfigureAwait(false))
        {
            await Refuse(context, StatusCodes.Status503ServiceUnavailable, "too many requests at once; try again").ConfigureAwait(false);
            return;
        }
        byte[]? body;
        try
        {
            body = await ReadCapped(request.Body, context.RequestAborted).ConfigureAwait(false);
        }
        finally
        {
            _bodySlots.Release();
        }
        if (body is null)
        {
            await Refuse(context, StatusCodes.Status413PayloadTooLarge, $"request body too large (limit {MaxBodyBytes} bytes)").ConfigureAwait(false);
            return;
        }
        reason = ApiSignature.Verify(_options.Key, parsed, authority, request.Method, pathAndQuery, body);
        if (reason is null && !_seenNonces.TryAdd(parsed.Nonce, now))
        {
            reason = "signature replayed";
        }
        if (reason is not null)
        {
            await Unauthorized(context, request, pathAndQuery, remote, reason).ConfigureAwait(false);
            return;
        }
        ForgetOldNonces(now);
        // The endpoint reads the body again, from memory.
        request.Body = new MemoryStream(body, writable: false);
        request.ContentLength = body.Length;
        await _next(context).ConfigureAwait(false);
    }

    /// <summary>The body, or null once it passes <see cref="MaxBodyBytes"/> (reading stops there, chunked or not).</summary>
    private static async Task<byte[]?> ReadCapped(Stream body, CancellationToken ct)
    {
        using var ms = new MemoryStream();
        byte[] buffer = new byte[16 << 10];
        while (true)
        {
            int n = await body.ReadAsync(buffer, ct).ConfigureAwait(false);
            if (n == 0)
            {
                return ms.ToArray();
            }
            if (ms.Length + n > MaxBodyBytes)
            {
                return null;
            }
            ms.Write(buffer, 0, n);
        }
    }

    private void ForgetOldNonces(DateTimeOffset now)
    {
        if (_seenNonces.Count <= 10_000)
        {
            return;
        }
        foreach (var kv in _seenNonces)
        {
            if (now - kv.Value > 2 * ApiSignature.Skew)
            {
                _seenNonces.TryRemove(kv.Key, out _);
            }
        }
    }

    private Task Unauthorized(HttpContext context, HttpRequest request, string pathAndQuery, string remote, string reason)
    {
        Log.ApiRefused(_logger, request.Method, pathAndQuery, remote, reason);
        // The connection is not kept for another request: a client without the key gets nothing more from it.
        context.Response.Headers.Connection = "close";
        return Refuse(context, StatusCodes.Status401Unauthorized, "unauthorized: " + reason);
    }

    private static Task Refuse(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new ErrorBody(message), AgentJson.Options);
    }
}
