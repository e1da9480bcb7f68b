using Ferry.Core.Migration;
using System.Globalization;
using Ferry.Core.Reporting;
using Ferry.Core.Units;
using Spectre.Console;

namespace Ferry.Cli.Rendering;

/// <summary>The end-of-migration summary: the six metrics of the paper's section 3.1, then the rounds.</summary>
internal static class SummaryRenderer
{
    public static void Render(IAnsiConsole console, MigrationReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        string Ms(double v) => string.Create(inv, $"{v:0.0} ms");
        var t = r.Timing;
        var pages = r.Pages;
        var d = r.Degradation;
        string outcome = r.Outcome == MigrationOutcome.Completed ? "[green]completed[/]" : $"[red]{Markup.Escape(r.Outcome.ToWire())}[/]";
        console.MarkupLine($"Migration [bold]{Markup.Escape(r.MigrationId)}[/] of VM [bold]{Markup.Escape(r.Vm.Id)}[/] " +
            $"({UnitParser.FormatBytes(r.Vm.MemoryBytes)}, {Markup.Escape(r.Vm.Workload)}) by {Markup.Escape(r.Technique)}: {outcome}");
        if (r.Error is { } err)
        {
            console.MarkupLine($"[red]error:[/] {Markup.Escape(err)}");
        }
        var table = new Table().RoundedBorder().AddColumn("metric").AddColumn("value");
        table.AddRow("preparation time", Ms(t.PreparationMs));
        table.AddRow("downtime", Markup.Escape(string.Create(inv,
            $"{t.DowntimeMs:0.0} ms (final pages {t.DowntimeParts.FinalPagesMs:0.0}, state {t.DowntimeParts.StateMs:0.0}, switchover {t.DowntimeParts.SwitchoverMs:0.0})")));
        table.AddRow("resume time", Ms(t.ResumeMs));
        table.AddRow("pages transferred", Markup.Escape(string.Create(inv,
            $"{pages.Sent:N0} sent ({pages.Unique:N0} unique, {pages.Resent:N0} re-sent, {pages.ZeroSent:N0} zero), {pages.NeverWrittenSkipped:N0} never-written skipped; " +
            $"{UnitParser.FormatBytes(pages.WireBytes)} on the wire for {UnitParser.FormatBytes(pages.RawBytes)} of pages")));
        table.AddRow("total migration time", Ms(t.TotalMs));
        table.AddRow("connections", Markup.Escape(r.Settings.PageConnectionsUsed > 0
            ? string.Create(inv, $"control + {r.Settings.PageConnectionsUsed} page connections")
            : "one connection for everything"));
        table.AddRow("application degradation", Markup.Escape(d.BaselineOpsPerSecond > 0
            ? string.Create(inv, $"{d.BaselineOpsPerSecond:N0} ops/s before → {d.DuringOpsPerSecond:N0} ops/s during ({d.DegradationPercent:0.0}% lower; {WhereCounted(d)}") +
              // Without a live round the "live" span is only the offer, a few ms: its rate is noise.
              (r.Rounds.Any(x => x.Kind == "live") ? string.Create(inv, $"; live rounds alone {d.LiveOpsPerSecond:N0} ops/s, {d.LiveDegradationPercent:0.0}% lower)") : ")")
            : "no baseline (idle guest)"));
        if (d.BaselineOpsPerSecond > 0 && d is { ResumeOpsPerSecond: { } resumeRate, ResumeDegradationPercent: { } resumePercent })
        {
            table.AddRow("degradation, resume phase", Markup.Escape(string.Create(inv,
                $"{resumeRate:N0} ops/s at the destination while pages were missing ({resumePercent:0.0}% lower, over {t.ResumeMs:0.0} ms)")));
        }
        if (r.PostCopy is { Used: true } pc)
        {
            table.AddRow("post-copy faults", Markup.Escape(string.Create(inv,
                $"{pc.Faults:N0} (latency p50 {pc.FaultLatencyP50Ms:0.00} ms, p99 {pc.FaultLatencyP99Ms:0.00} ms, max {pc.FaultLatencyMaxMs:0.00} ms) via {FaultPathName(pc.FaultPath)}")));
            string recovered = pc.Recoveries > 0 ? string.Create(inv, $"; {pc.Recoveries} reconnection(s) after {pc.PausedMs / 1000:0.0} s paused, {pc.PagesSentAgain:N0} lost in flight and sent again, {pc.DuplicatePages:N0} duplicates") : "";
            table.AddRow("post-copy pages", Markup.Escape(string.Create(inv,
                $"{pc.PendingAtSwitchover:N0} after resume: {pc.DemandPages:N0} on demand, {pc.PrePagedPages:N0} pre-paged, {pc.PushPages:N0} pushed; {pc.ZeroFilledLocally:N0} zero-filled locally{recovered}")));
            if (pc.AutoPacedBytesPerSecond > 0)
            {
                table.AddRow("post-copy pacing", Markup.Escape(
                    $"push paced at {UnitParser.FormatRate(pc.AutoPacedBytesPerSecond)}, 90% of the link rate measured from TCP's acknowledged bytes"));
            }
        }
        console.Write(table);

        if (r.Rounds.Count > 0)
        {
            var rounds = new Table().RoundedBorder().AddColumns("round", "kind", "pages sent", "pages dirtied", "duration", "bandwidth", "dirty rate", "decision");
            foreach (var x in r.Rounds)
            {
                rounds.AddRow(
                    x.Round.ToString(inv),
                    x.Kind,
                    x.PagesSent.ToString("N0", inv),
                    x.PagesDirtied.ToString("N0", inv),
                    Ms(x.DurationMs),
                    UnitParser.FormatRate(x.BandwidthBytesPerSecond),
                    string.Create(inv, $"{x.DirtyPagesPerSecond:N0}/s"),
                    Markup.Escape(x.Decision));
            }
            console.Write(rounds);
        }
        var v = r.Verification;
        if (v.SourceDigest.Length > 0)
        {
            string rehash = v.SourceRehashMatches switch { true => "matches", false => "[red]DIFFERS[/]", null => "not run" };
            console.MarkupLine(string.Create(inv,
                $"memory digest at switchover: source {v.SourceDigest}, destination {v.DestinationDigest} → {(v.DigestsMatch ? "[green]match[/]" : "[red]MISMATCH[/]")}; " +
                $"hashing cost {v.SourceHashMs:0.0} ms at the source, {v.DestinationHashMs:0.0} ms at the destination, {v.DigestInDowntimeMs:0.00} ms in downtime; " +
                $"source copy rehash after switchover {rehash} ({v.SourceRehashMs:0.0} ms)"));
        }
        console.MarkupLine($"dirty log: {Markup.Escape(r.DirtyLog.Backend)} ({Markup.Escape(r.DirtyLog.Reason)})");
        console.MarkupLine($"page install at the destination: {Markup.Escape(r.PageInstall.Backend)} ({Markup.Escape(r.PageInstall.Reason)})");
        console.MarkupLine($"stop: {Markup.Escape(r.StopReason ?? "-")}");
    }

    /// <summary>Says whose work the "during" rate holds, so a post-copy figure is not read as the source's alone.</summary>
    private static string WhereCounted(DegradationMetrics d) => d.DestinationMs > 0
        ? string.Create(CultureInfo.InvariantCulture, $"{d.SourceOps:N0} ops at the source + {d.DestinationOps:N0} at the destination")
        : string.Create(CultureInfo.InvariantCulture, $"{d.SourceOps:N0} ops, all at the source");

    /// <summary>The fault path's short name ("userfaultfd" or "software"), without the explanation after the colon.</summary>
    private static string FaultPathName(string faultPath)
    {
        int colon = faultPath.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 ? faultPath[..colon] : faultPath.Length > 0 ? faultPath : "unknown path";
    }
}
