using Ferry.Agent.Migrations;
using Ferry.Core.Migration;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Ferry.Agent.Api;
using Ferry.Agent.Client;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// After a post-copy switchover the VM runs at the destination ahead of its pages, so a broken link
/// must pause the migration, never lose the VM. Real agent processes, with a proxy between the
/// source agent and the destination's migration port standing in for the network.
/// </summary>
public sealed class PostCopyRecoveryTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(60);

    // 96 MiB of random bytes pushed at 32 MB/s: about 3 s of post-copy to cut into, while the
    // guest keeps writing at the destination and faults on pages that have not arrived.
    private static CreateVmRequest Vm(string id) => new()
    {
        Id = id,
        Memory = "96MiB",
        Workload = "memtouch:rate=20000,wss=96MiB,pattern=uniform,seed=3",
        Fill = "random",
    };

    /// <summary>Page connections every migration here uses beside its control connection (the default): a cut link cuts all of them.</summary>
    private const int PageConnections = 2;

    private static StartMigrationRequest PostCopy(string vmId, AgentProcess dest, CuttableProxy? proxy, string? retryWindow = null) => new()
    {
        PageConnections = PageConnections,
        VmId = vmId,
        Target = dest.Api.ToString(),
        Technique = "postcopy",
        MaxBandwidth = "32MB/s",
        DirtyLog = "software",
        MigrationEndpoint = proxy?.Endpoint.ToString(),
        PostCopyRetryWindow = retryWindow,
    };

    private static async Task<CuttableProxy> ProxyTo(AgentProcess dest)
    {
        AgentInfo info = await dest.Client.InfoAsync(default);
        return new CuttableProxy(IPEndPoint.Parse(info.MigrationEndpoint));
    }

    private static bool Ended(OutgoingState state) => state.IsFinished();

    /// <summary>Until post-copy (running, not paused) has sent <paramref name="fraction"/> of the pages it started with.</summary>
    private static Task<MigrationView> UntilPostCopyAt(AgentProcess source, string id, double fraction) =>
        Wait.UntilAsync(() => source.Client.GetMigrationAsync(id, default),
            v => v.Progress is { Phase: MigrationPhase.PostCopy, RoundPages: > 0 } p && p.RoundPagesSent >= fraction * p.RoundPages || Ended(v.State),
            Long, $"post-copy to pass {fraction:P0} of its pages");

    private static Task<MigrationView> UntilEnded(AgentProcess source, string id) =>
        Wait.UntilAsync(() => source.Client.GetMigrationAsync(id, default), v => Ended(v.State), Long, "the migration to end");

    private static Task<MigrationView> UntilAwaitingResume(AgentProcess source, string id) =>
        Wait.UntilAsync(() => source.Client.GetMigrationAsync(id, default),
            v => v.State == OutgoingState.PostCopyPaused && v.Progress is { AwaitingResume: true } || Ended(v.State), Long,
            "post-copy to stay paused past its automatic retries");

    private static async Task AssertCompletedAndRunsThere(MigrationView done, AgentProcess dest, string vmId, string context)
    {
        Assert.True(done.State == OutgoingState.Completed, $"{context}: {done.State}: {done.Error}");
        var r = done.Report!;
        Assert.True(r.Verification.DigestsMatch, context);
        Assert.Equal(r.Verification.SourceDigest, r.Verification.DestinationDigest);
        Assert.True(r.Verification.SourceRehashMatches == true, context);
        Assert.Equal(0, r.PostCopy.DuplicatePages);
        // Pages lost in flight at a cut were missing, so sending them again is no duplicate; nothing else goes twice.
        Assert.Equal(r.PostCopy.PendingAtSwitchover + r.PostCopy.PagesSentAgain, r.PostCopy.DemandPages + r.PostCopy.PrePagedPages + r.PostCopy.PushPages);
        VmView there = await dest.Client.GetVmAsync(vmId, default);
        Assert.Equal("running", there.State);
        await Wait.UntilAsync(() => dest.Client.GetVmAsync(vmId, default), v => v.Ops > there.Ops + 500, Long,
            "the migrated guest to keep running at the destination");
    }

    [Fact]
    public async Task Links_cut_at_random_moments_after_switchover_are_recovered_and_nothing_is_sent_twice()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        // Three cuts, each at least 8 % of the pages after the one before, all before two thirds.
        double[] cutAt = new double[3];
        double at = 0.05;
        for (int i = 0; i < cutAt.Length; i++)
        {
            at += 0.08 + rng.NextDouble() * 0.12;
            cutAt[i] = at;
        }
        string context = $"seed {seed}, cuts at {string.Join(", ", cutAt.Select(f => f.ToString("P0")))}";

        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var dest = AgentProcess.Start(key);
        using var proxy = await ProxyTo(dest);
        await source.Client.CreateVmAsync(Vm("cut"), default);
        var m = await source.Client.StartMigrationAsync(PostCopy("cut", dest, proxy), default);

        int cuts = 0;
        foreach (double fraction in cutAt)
        {
            MigrationView v = await UntilPostCopyAt(source, m.Id, fraction);
            if (Ended(v.State))
            {
                break;
            }
            cuts += proxy.CutAll() > 0 ? 1 : 0;
        }

        MigrationView done = await UntilEnded(source, m.Id);
        await AssertCompletedAndRunsThere(done, dest, "cut", context);
        Assert.True(cuts == 3, $"{context}: only {cuts} cuts landed during post-copy");
        Assert.True(done.Report!.PostCopy.Recoveries == cuts, $"{context}: {done.Report.PostCopy.Recoveries} recoveries for {cuts} cuts");
        Assert.True(proxy.Accepted >= (1 + cuts) * (1 + PageConnections), context);
        IncomingView[] incoming = await dest.Client.ListIncomingAsync(default);
        Assert.Equal(cuts, incoming.Count(i => i.State == IncomingState.ResumedPostCopy));
        Assert.Contains(incoming, i => i.MigrationId == m.Id && i.State == IncomingState.Completed);
    }

    [Fact]
    public async Task A_post_copy_paused_past_its_retry_window_resumes_on_request_through_the_api_and_the_cli()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var dest = AgentProcess.Start(key);
        using var proxy = await ProxyTo(dest);
        await source.Client.CreateVmAsync(Vm("held"), default);
        var m = await source.Client.StartMigrationAsync(PostCopy("held", dest, proxy, retryWindow: "1s"), default);

        // First pause: the link stays down past the 1 s of automatic retries; resumed through the API.
        await UntilPostCopyAt(source, m.Id, 0.15);
        proxy.Refusing = true;
        // The migration's link: its control connection and its page connections.
        Assert.Equal(1 + PageConnections, proxy.CutAll());
        MigrationView paused = await UntilAwaitingResume(source, m.Id);
        Assert.Equal(OutgoingState.PostCopyPaused, paused.State);
        Assert.Equal(MigrationPhase.PostCopyPaused, paused.Progress!.Phase);
        Assert.Contains("waiting for a resume request", paused.Progress.Detail);
        Assert.Equal(OutgoingState.PostCopyPaused, (await source.Client.ListMigrationsAsync(default)).Single(x => x.Id == m.Id).State);
        // The destination keeps the VM waiting for its pages: not failed, not listed as arrived.
        Assert.Contains(await dest.Client.ListIncomingAsync(default), i => i.MigrationId == m.Id && i.State == IncomingState.PostCopyPaused);
        Assert.Empty(await dest.Client.ListVmsAsync(default));
        var unknown = await Assert.ThrowsAsync<AgentApiException>(() => source.Client.ResumeMigrationAsync("m-nope", default));
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);

        proxy.Refusing = false;
        MigrationView resumed = await source.Client.ResumeMigrationAsync(m.Id, default);
        Assert.Equal(m.Id, resumed.Id);

        // Second pause, later in the same migration: resumed with `ferry migrate --resume`, which follows it to the end.
        await UntilPostCopyAt(source, m.Id, 0.5);
        proxy.Refusing = true;
        // The migration's link: its control connection and its page connections.
        Assert.Equal(1 + PageConnections, proxy.CutAll());
        await UntilAwaitingResume(source, m.Id);
        proxy.Refusing = false;
        string report = Path.Combine(Path.GetTempPath(), $"ferry-resume-{Guid.NewGuid():n}.json");
        try
        {
            var (exit, _, stderr) = RunCli("migrate", "--resume", m.Id, "--from", source.Api.ToString(), "--key-file", key.Path, "--report", report);
            Assert.True(exit == 0, $"exit {exit}; stderr: {stderr}");
            Assert.Contains($"resuming post-copy of migration {m.Id}", stderr);
            using var written = JsonDocument.Parse(File.ReadAllText(report));
            Assert.Equal("completed", written.RootElement.GetProperty("outcome").GetString());
            Assert.Equal(m.Id, written.RootElement.GetProperty("migrationId").GetString());
        }
        finally
        {
            File.Delete(report);
        }

        MigrationView done = await UntilEnded(source, m.Id);
        await AssertCompletedAndRunsThere(done, dest, "held", "two pauses");
        Assert.True(done.Report!.PostCopy.Recoveries >= 2, $"{done.Report.PostCopy.Recoveries} recoveries");
        Assert.True(done.Report.PostCopy.PausedMs >= 2000, $"paused {done.Report.PostCopy.PausedMs} ms in all");
        var over = await Assert.ThrowsAsync<AgentApiException>(() => source.Client.ResumeMigrationAsync(m.Id, default));
        Assert.Equal(HttpStatusCode.Conflict, over.Status);

        // Wrong usage is one line and exit code 2.
        var notPaused = RunCli("migrate", "--resume", m.Id, "--from", source.Api.ToString(), "--key-file", key.Path);
        Assert.Equal(2, notPaused.Exit);
        Assert.Contains("not post-copy paused", notPaused.Stderr);
        var noSuch = RunCli("migrate", "--resume", "m-nope", "--from", source.Api.ToString(), "--key-file", key.Path);
        Assert.Equal(2, noSuch.Exit);
        Assert.Contains("no migration 'm-nope'", noSuch.Stderr);
        var noFrom = RunCli("migrate", "--resume", m.Id, "--key-file", key.Path);
        Assert.Equal(2, noFrom.Exit);
        Assert.Contains("--resume needs --from", noFrom.Stderr);
    }

    [Fact]
    public async Task A_source_host_that_dies_after_switchover_is_reported_plainly_with_what_was_lost()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var dest = AgentProcess.Start(key, "--post-copy-pause-limit", "2s");
        await source.Client.CreateVmAsync(Vm("doomed"), default);
        var m = await source.Client.StartMigrationAsync(PostCopy("doomed", dest, proxy: null), default);
        await UntilPostCopyAt(source, m.Id, 0.2);

        source.Kill();

        IncomingView[] incoming = await Wait.UntilAsync(() => dest.Client.ListIncomingAsync(default),
            l => l.Any(i => i.MigrationId == m.Id && i.State == IncomingState.Failed), Long, "the destination to give up on the dead source");
        string error = incoming.Single(i => i.MigrationId == m.Id).Error!;
        Assert.Contains("the source did not reconnect within 2 s", error);
        Assert.Matches(@"The VM could not be completed: [1-9]\d* pages \([\d.]+ MiB\) never arrived from the source; it ran here for [\d.]+ s and is now stopped and discarded", error);
        Assert.Empty(await dest.Client.ListVmsAsync(default));
        await Wait.UntilAsync(() => Task.FromResult(dest.Log), log => log.Contains("could not be completed", StringComparison.Ordinal), Long,
            "the destination's log to say the VM could not be completed");
    }

    [Fact]
    public async Task A_destination_that_gave_up_refuses_the_late_source_which_then_fails_at_once()
    {
        using var key = new KeyFile();
        using var source = AgentProcess.Start(key);
        using var dest = AgentProcess.Start(key, "--post-copy-pause-limit", "1s");
        using var proxy = await ProxyTo(dest);
        await source.Client.CreateVmAsync(Vm("late"), default);
        var m = await source.Client.StartMigrationAsync(PostCopy("late", dest, proxy), default);
        await UntilPostCopyAt(source, m.Id, 0.15);
        proxy.Refusing = true;
        // The migration's link: its control connection and its page connections.
        Assert.Equal(1 + PageConnections, proxy.CutAll());
        await Wait.UntilAsync(() => dest.Client.ListIncomingAsync(default), l => l.Any(i => i.MigrationId == m.Id && i.State == IncomingState.Failed), Long,
            "the destination to stop waiting after its 1 s pause limit");

        // The source is still within its 30 s of automatic retries; its next attempt reaches a destination with nothing waiting.
        proxy.Refusing = false;
        MigrationView done = await UntilEnded(source, m.Id);
        Assert.Equal(OutgoingState.Failed, done.State);
        Assert.Contains("the destination no longer has this post-copy", done.Error);
        Assert.Contains("source keeps its paused copy", done.Error);
        Assert.Equal("paused", (await source.Client.GetVmAsync("late", default)).State);
        Assert.Empty(await dest.Client.ListVmsAsync(default));
    }

    private static (int Exit, string Stdout, string Stderr) RunCli(params string[] args)
    {
        using var p = Process.Start(AgentProcess.FerryStartInfo(args))!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(Long))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"ferry {string.Join(' ', args)} did not finish within {Long.TotalSeconds:0} s");
        }
        return (p.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }
}
