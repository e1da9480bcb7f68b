using Ferry.Core.Migration;
using Ferry.Cli.Rendering;
using Ferry.Core.Reporting;
using Spectre.Console;

namespace Ferry.EndToEnd.Tests;

/// <summary>The `ferry migrate` summary says where the guest's work was counted and shows the resume phase's degradation.</summary>
public sealed class SummaryRendererTests
{
    private static string Render(MigrationReport report)
    {
        var writer = new StringWriter();
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Out = new AnsiConsoleOutput(writer),
        });
        // Wide enough that no cell wraps, so the text can be searched.
        console.Profile.Width = 500;
        SummaryRenderer.Render(console, report);
        return writer.ToString();
    }

    [Fact]
    public void A_post_copy_summary_counts_both_sides_and_shows_the_resume_phase()
    {
        var dest = new DestinationWork { ResumeOps = 4_000, ResumeMs = 800, Ops = 6_000, Ms = 900 };
        var report = new MigrationReport
        {
            Technique = "postcopy",
            Outcome = MigrationOutcome.Completed,
            Timing = new TimingMetrics { TotalMs = 1_000, ResumeMs = 800 },
            Degradation = DegradationCalculator.Compute(10_000, 3_000, sourceOps: 10, liveMs: 5, totalMs: 1_000, dest),
            PostCopy = new PostCopyMetrics { Used = true, Faults = 12, FaultPath = "userfaultfd: guest RAM registered MISSING", AutoPacedBytesPerSecond = 112_500_000 },
        };
        string text = Render(report);
        Assert.Contains("6,010 ops/s during (39.9% lower; 10 ops at the source + 6,000 at the destination", text);
        Assert.Contains("degradation, resume phase", text);
        Assert.Contains("via userfaultfd", text);
        Assert.Contains("push paced at 112.5 MB/s", text);
        Assert.DoesNotContain("live rounds alone", text);     // no live round: the offer's few ms are noise
        Assert.Contains("5,000 ops/s at the destination while pages were missing (50.0% lower, over 800.0 ms)", text);
    }

    [Fact]
    public void A_pre_copy_summary_has_no_resume_phase_row()
    {
        var report = new MigrationReport
        {
            Technique = "precopy",
            Outcome = MigrationOutcome.Completed,
            Timing = new TimingMetrics { TotalMs = 1_250, PreparationMs = 1_000 },
            Degradation = DegradationCalculator.Compute(10_000, 3_000, sourceOps: 9_000, liveMs: 1_000, totalMs: 1_250, destination: null),
            Rounds = [new RoundRecord { Round = 1, Kind = "live", PagesSent = 10 }],
        };
        string text = Render(report);
        Assert.Contains("7,200 ops/s during (28.0% lower; 9,000 ops, all at the source", text);
        Assert.DoesNotContain("resume phase", text);
        Assert.Contains("live rounds alone 9,000 ops/s, 10.0% lower", text);
    }
}
