using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Wrong addresses and URLs for `ferry`: an ADDRESS:PORT option out of range is one line and exit
/// code 2; a URL that answers, but not as a Ferry agent does, is named as such with what it sent.
/// </summary>
public sealed class CliAgentUrlTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("--listen", "127.0.0.1:99999", "port 99999 is out of range")]
    [InlineData("--listen", "127.0.0.1", "is not ADDRESS:PORT")]
    [InlineData("--listen", "localhost:7100", "is not ADDRESS:PORT")]
    [InlineData("--migration-listen", "127.0.0.1:70000", "port 70000 is out of range")]
    public void A_wrong_address_option_gets_one_line_naming_it_and_exit_code_2(string option, string value, string problem)
    {
        using var key = new KeyFile();
        string[] args = option == "--listen"
            ? ["agent", "--listen", value, "--key-file", key.Path]
            : ["agent", "--listen", "127.0.0.1:0", option, value, "--key-file", key.Path];
        var (exit, stdout, stderr) = CliProcess.Run(Limit, args);
        Assert.True(exit == 2, $"exit {exit}; stderr: {stderr}");
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"ferry: {option} '{value}'", line);
        Assert.Contains(problem, line);
        Assert.Equal("", stdout.Trim());
    }

    [Fact]
    public void A_binary_key_file_too_short_is_refused_by_the_agent_with_what_it_needs()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-short-{Guid.NewGuid():n}.key");
        File.WriteAllBytes(path, [0xFF, 0x00, .. new byte[18]]);
        try
        {
            var (exit, _, stderr) = CliProcess.Run(Limit, "agent", "--listen", "127.0.0.1:0", "--key-file", path);
            Assert.True(exit == 2, $"exit {exit}; stderr: {stderr}");
            string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains("binary key", line);
            Assert.Contains("at least 32 bytes", line);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A web server on loopback that answers everything with an HTML page.</summary>
    private static async Task<WebApplication> StartHtmlServerAsync(int status)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        var app = builder.Build();
        app.Run(async ctx =>
        {
            ctx.Response.StatusCode = status;
            ctx.Response.ContentType = "text/html; charset=utf-8";
            await ctx.Response.WriteAsync("<!doctype html><html><body>It works!</body></html>");
        });
        await app.StartAsync();
        return app;
    }

    private static Uri Address(WebApplication app) =>
        new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    [Theory]
    [InlineData(200)]
    [InlineData(404)]
    public async Task A_url_serving_html_is_not_a_ferry_agent(int status)
    {
        await using var web = await StartHtmlServerAsync(status);
        using var key = new KeyFile();
        string url = Address(web).ToString();
        var (exit, stdout, stderr) = CliProcess.Run(Limit, "migrate", "--from", url, "--to", url, "--key-file", key.Path,
            "--report", Path.Combine(Path.GetTempPath(), $"ferry-not-agent-{Guid.NewGuid():n}.json"));
        Assert.True(exit == 1, $"exit {exit}; stderr: {stderr}");
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"ferry: {url.TrimEnd('/')}: not a Ferry agent (got text/html)", line);
        Assert.DoesNotContain("invalid start of a value", line);
        Assert.Equal("", stdout.Trim());
    }

    [Fact]
    public async Task A_real_agent_as_destination_and_html_as_source_names_the_source()
    {
        await using var web = await StartHtmlServerAsync(200);
        using var key = new KeyFile();
        using var agent = AgentProcess.Start(key);
        string url = Address(web).ToString();
        var (exit, _, stderr) = CliProcess.Run(Limit, "migrate", "--from", agent.Api.ToString(), "--to", url, "--key-file", key.Path,
            "--report", Path.Combine(Path.GetTempPath(), $"ferry-not-agent-{Guid.NewGuid():n}.json"));
        Assert.True(exit == 1, $"exit {exit}; stderr: {stderr}");
        Assert.Equal($"ferry: {url.TrimEnd('/')}: not a Ferry agent (got text/html)", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Empty(await agent.Client.ListVmsAsync(default));
    }
}
