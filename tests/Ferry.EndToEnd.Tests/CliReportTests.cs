using System.Diagnostics;
using System.Text;
using Ferry.Cli.Commands;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// `ferry migrate --report PATH` writes regular files only, atomically: a device, a directory, a
/// kernel file or a directory it cannot write in is refused before anything starts (one line,
/// exit 2); a write that fails at the end says so, exits 1, and never also says "report written".
/// </summary>
public sealed class CliReportTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    /// <summary>A refusal up front: exit 2, one line naming --report, nothing started, nothing on stdout.</summary>
    private static string AssertRefusedUpFront(string report, string expected)
    {
        var (exit, stdout, stderr) = CliProcess.Run(Limit, "migrate", "--memory", "64MiB", "--report", report);
        Assert.True(exit == 2, $"exit {exit}; stderr: {stderr}");
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("ferry: --report: ", line);
        Assert.Contains(expected, line);
        Assert.Equal("", stdout.Trim());
        return line;
    }

    private static string FileType(string path)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat") { ArgumentList = { "-c", "%F", path }, RedirectStandardOutput = true, UseShellExecute = false })!;
        string type = stat.StandardOutput.ReadToEnd().Trim();
        Assert.True(stat.WaitForExit(10_000));
        return type;
    }

    [Theory]
    [InlineData("/dev/full")]
    [InlineData("/dev/null")]
    public void A_device_is_refused_up_front_and_left_as_it_was(string device)
    {
        Assert.Equal("character special file", FileType(device));
        AssertRefusedUpFront(device, "is a device");
        Assert.Equal("character special file", FileType(device));
    }

    [Fact]
    public void A_directory_is_refused_up_front()
    {
        string dir = Directory.CreateTempSubdirectory("ferry-report-test-").FullName;
        try
        {
            AssertRefusedUpFront(dir, "is a directory");
            Assert.Empty(Directory.EnumerateFileSystemEntries(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_kernel_file_is_refused_up_front() => AssertRefusedUpFront("/proc/version", "not a regular file");

    [Fact]
    public void A_fifo_is_refused_up_front_without_blocking_on_it()
    {
        string dir = Directory.CreateTempSubdirectory("ferry-report-test-").FullName;
        try
        {
            string fifo = Path.Combine(dir, "report.json");
            using (var mkfifo = Process.Start(new ProcessStartInfo("mkfifo") { ArgumentList = { fifo }, UseShellExecute = false })!)
            {
                Assert.True(mkfifo.WaitForExit(10_000));
                Assert.Equal(0, mkfifo.ExitCode);
            }
            AssertRefusedUpFront(fifo, "not a regular file");
            Assert.Equal("fifo", FileType(fifo));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_directory_this_user_cannot_write_in_is_refused_up_front()
    {
        using var readOnly = ReadOnlyDirectory.Create();
        AssertRefusedUpFront(Path.Combine(readOnly.Path, "report.json"), "cannot create a file in");
    }

    [Fact]
    public void A_failed_write_at_the_end_keeps_the_old_report_exits_1_and_never_says_written()
    {
        using var dir = ReadOnlyDirectory.Create(writable: true);
        string report = Path.Combine(dir.Path, "report.json");
        File.WriteAllText(report, "the previous report");
        using var ferry = CliProcess.Start("migrate", "--memory", "32MiB", "--workload", "memtouch:rate=2000,wss=8MiB,seed=1",
            "--baseline", "3s", "--report", report);
        // The check up front passed; during the baseline the directory stops taking new files.
        ferry.WaitForStderr(l => l.Contains("measuring its throughput", StringComparison.Ordinal), TimeSpan.FromSeconds(120), "the VM's baseline");
        // Root without chattr: the directory goes away instead (the old report with it).
        bool readOnly = dir.MakeReadOnly();
        if (!readOnly)
        {
            Directory.Delete(dir.Path, recursive: true);
        }
        int exit = ferry.WaitForExit(TimeSpan.FromSeconds(120));
        // A non-zero exit keeps the agents' log directory; this test made it, this test removes it.
        const string Kept = "ferry: agent logs kept in ";
        if (ferry.StderrLines.FirstOrDefault(l => l.StartsWith(Kept, StringComparison.Ordinal)) is { } kept
            && Path.GetDirectoryName(kept[Kept.Length..]) is { } logDir && Path.GetFileName(logDir).StartsWith("ferry-", StringComparison.Ordinal))
        {
            Directory.Delete(logDir, recursive: true);
        }

        Assert.True(exit == 1, $"exit {exit}; stderr:\n{ferry.Stderr}");
        Assert.Contains(ferry.StderrLines, l => l.StartsWith($"ferry: could not write the report to {report}: ", StringComparison.Ordinal));
        Assert.DoesNotContain("report written", ferry.Stdout);
        if (readOnly)
        {
            Assert.Equal("the previous report", File.ReadAllText(report));
            dir.MakeWritable();
            Assert.Equal(["report.json"], Directory.EnumerateFileSystemEntries(dir.Path).Select(Path.GetFileName));
        }
    }

    [Fact]
    public void The_report_is_written_through_a_temporary_file_and_replaces_the_old_one_whole()
    {
        string dir = Directory.CreateTempSubdirectory("ferry-report-test-").FullName;
        try
        {
            string report = Path.Combine(dir, "r.json");
            File.WriteAllText(report, "old, and longer than the new one: " + new string('x', 500));
            Assert.Equal(report, ReportFile.Check(report));
            Assert.Null(ReportFile.TryWrite(report, Encoding.UTF8.GetBytes("{}")));
            Assert.Equal("{}", File.ReadAllText(report));
            Assert.Equal(["r.json"], Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName));

            // The path became a directory during the migration: refused at write time, nothing left behind.
            File.Delete(report);
            Directory.CreateDirectory(report);
            Assert.Contains("is a directory", ReportFile.TryWrite(report, "{}"u8));
            Assert.Empty(Directory.EnumerateFileSystemEntries(report));

            // Its directory went away: the error says why.
            Directory.Delete(dir, recursive: true);
            Assert.NotNull(ReportFile.TryWrite(report + "-gone.json", "{}"u8));
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [Fact]
    public void A_symbolic_link_to_a_report_is_kept_and_the_file_it_names_replaced()
    {
        string dir = Directory.CreateTempSubdirectory("ferry-report-test-").FullName;
        try
        {
            string real = Path.Combine(dir, "real.json");
            string link = Path.Combine(dir, "link.json");
            File.WriteAllText(real, "old");
            File.CreateSymbolicLink(link, real);
            string target = ReportFile.Check(link);
            Assert.Equal(real, target);
            Assert.Null(ReportFile.TryWrite(target, "{}"u8));
            Assert.Equal(real, new FileInfo(link).LinkTarget);
            Assert.Equal("{}", File.ReadAllText(link));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>
/// A temporary directory this process cannot create files in: mode 0555 for an ordinary user; for
/// root, who ignores modes, the immutable attribute (chattr +i), or else /proc, which takes no new files.
/// </summary>
internal sealed class ReadOnlyDirectory : IDisposable
{
    private readonly string? _owned;
    private bool _immutable;

    private ReadOnlyDirectory(string path, string? owned)
    {
        Path = path;
        _owned = owned;
    }

    public string Path { get; private set; }

    public static ReadOnlyDirectory Create(bool writable = false)
    {
        string dir = Directory.CreateTempSubdirectory("ferry-report-ro-").FullName;
        var d = new ReadOnlyDirectory(dir, dir);
        if (!writable)
        {
            d.MakeReadOnly();
        }
        return d;
    }

    /// <summary>False when only /proc could stand in (root, and no chattr on this filesystem): <see cref="Path"/> is then /proc.</summary>
    public bool MakeReadOnly()
    {
        if (!Environment.IsPrivilegedProcess && !OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(_owned!, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
            return true;
        }
        if (Chattr("+i"))
        {
            _immutable = true;
            return true;
        }
        Path = "/proc";
        return false;
    }

    public void MakeWritable()
    {
        if (_immutable)
        {
            Chattr("-i");
            _immutable = false;
        }
        if (Directory.Exists(_owned) && !OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(_owned!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    private bool Chattr(string flag)
    {
        using var p = Process.Start(new ProcessStartInfo("chattr") { ArgumentList = { flag, _owned! }, UseShellExecute = false, RedirectStandardError = true })!;
        p.StandardError.ReadToEnd();
        return p.WaitForExit(10_000) && p.ExitCode == 0;
    }

    public void Dispose()
    {
        MakeWritable();
        if (Directory.Exists(_owned))
        {
            Directory.Delete(_owned!, recursive: true);
        }
    }
}
