using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Ferry.Agent.Api;
using Ferry.Protocol.Handshake;

namespace Ferry.Agent.Client;

/// <summary>An agent's API refused or failed a request; the message is the agent's own one-line error.</summary>
public sealed class AgentApiException(HttpStatusCode status, string message) : Exception(message)
{
    public HttpStatusCode Status { get; } = status;
}

/// <summary>A client for one agent's control API; signs every request with the cluster key.</summary>
public sealed class AgentClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly ClusterKey _key;
    private readonly TimeProvider _time;

    public AgentClient(Uri baseAddress, ClusterKey key, TimeProvider? time = null)
    {
        _http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };
        _key = key;
        _time = time ?? TimeProvider.System;
        BaseAddress = baseAddress;
    }

    public Uri BaseAddress { get; }

    public Task<AgentInfo> InfoAsync(CancellationToken ct) => SendAsync<AgentInfo>(HttpMethod.Get, "/v1/info", null, ct);

    public Task<VmView> CreateVmAsync(CreateVmRequest request, CancellationToken ct) => SendAsync<VmView>(HttpMethod.Post, "/v1/vms", request, ct);

    public Task<VmView[]> ListVmsAsync(CancellationToken ct) => SendAsync<VmView[]>(HttpMethod.Get, "/v1/vms", null, ct);

    public Task<VmView> GetVmAsync(string id, CancellationToken ct) => SendAsync<VmView>(HttpMethod.Get, $"/v1/vms/{Uri.EscapeDataString(id)}", null, ct);

    public Task DeleteVmAsync(string id, CancellationToken ct) => SendAsync<object>(HttpMethod.Delete, $"/v1/vms/{Uri.EscapeDataString(id)}", null, ct);

    public Task<MigrationView> StartMigrationAsync(StartMigrationRequest request, CancellationToken ct) =>
        SendAsync<MigrationView>(HttpMethod.Post, "/v1/migrations", request, ct);

    public Task<MigrationView> GetMigrationAsync(string id, CancellationToken ct) =>
        SendAsync<MigrationView>(HttpMethod.Get, $"/v1/migrations/{Uri.EscapeDataString(id)}", null, ct);

    public Task<MigrationView[]> ListMigrationsAsync(CancellationToken ct) => SendAsync<MigrationView[]>(HttpMethod.Get, "/v1/migrations", null, ct);

    public Task<MigrationView> CancelMigrationAsync(string id, CancellationToken ct) =>
        SendAsync<MigrationView>(HttpMethod.Post, $"/v1/migrations/{Uri.EscapeDataString(id)}/cancel", null, ct);

    /// <summary>Asks a post-copy paused migration to reconnect now; 404 (unknown id) and 409 (not paused) come back as <see cref="AgentApiException"/>.</summary>
    public Task<MigrationView> ResumeMigrationAsync(string id, CancellationToken ct) =>
        SendAsync<MigrationView>(HttpMethod.Post, $"/v1/migrations/{Uri.EscapeDataString(id)}/resume", null, ct);

    public Task<IncomingView[]> ListIncomingAsync(CancellationToken ct) => SendAsync<IncomingView[]>(HttpMethod.Get, "/v1/incoming", null, ct);

    private async Task<T> SendAsync<T>(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        byte[] bytes = body is null ? [] : JsonSerializer.SerializeToUtf8Bytes(body, body.GetType(), AgentJson.Options);
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(bytes);
            request.Content.Headers.ContentType = new("application/json");
        }
        request.Headers.TryAddWithoutValidation(ApiSignature.Header, ApiSignature.Sign(_key, BaseAddress.Authority, method.Method, path, bytes, _time.GetUtcNow()));
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, ct).ConfigureAwait(false);
        }
        catch (HttpRequestException ex)
        {
            throw new AgentApiException(HttpStatusCode.ServiceUnavailable, $"agent at {BaseAddress} unreachable: {ex.Message}");
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                string message = $"agent answered {(int)response.StatusCode} {response.ReasonPhrase}";
                try
                {
                    var err = await response.Content.ReadFromJsonAsync<ErrorBody>(AgentJson.Options, ct).ConfigureAwait(false);
                    if (err?.Error is { Length: > 0 } e)
                    {
                        message = e;
                    }
                }
                catch (Exception ex) when (ex is JsonException or NotSupportedException)
                {
                    // Not our error body; keep the status line (and say so when it is not even JSON).
                    if (response.Content.Headers.ContentType?.MediaType is { } type && !type.Contains("json", StringComparison.OrdinalIgnoreCase))
                    {
                        message = $"{NotAnAgent(response).Message}; {message}";
                    }
                }
                throw new AgentApiException(response.StatusCode, message);
            }
            if (response.StatusCode == HttpStatusCode.NoContent || typeof(T) == typeof(object))
            {
                return default!;
            }
            try
            {
                return await response.Content.ReadFromJsonAsync<T>(AgentJson.Options, ct).ConfigureAwait(false)
                    ?? throw new AgentApiException(response.StatusCode, "agent sent an empty body");
            }
            catch (Exception ex) when (ex is JsonException or NotSupportedException)
            {
                throw NotAnAgent(response);
            }
        }
    }

    /// <summary>What to say when the answer is not the API's JSON: the URL most likely points at something else.</summary>
    private AgentApiException NotAnAgent(HttpResponseMessage response) =>
        new(response.StatusCode, $"{BaseAddress.ToString().TrimEnd('/')}: not a Ferry agent (got {response.Content.Headers.ContentType?.MediaType ?? "no content type"})");

    public void Dispose() => _http.Dispose();
}
