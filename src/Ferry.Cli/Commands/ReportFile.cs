namespace Ferry.Cli.Commands;

/// <summary>
/// The <c>--report</c> file: a regular file, checked before anything starts and written atomically
/// (a temporary file in the same directory, then a rename), so a failed write loses nothing and a
/// device, directory or kernel file is never written to or replaced.
/// </summary>
internal static class ReportFile
{
    /// <summary>Filesystems of the kernel's own files (/proc, /sys, /dev…): nothing there is a report.</summary>
    private static readonly HashSet<string> PseudoFilesystems = new(StringComparer.Ordinal)
    {
        "proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2", "configfs",
        "bpf", "pstore", "efivarfs", "mqueue", "fusectl", "binfmt_misc", "hugetlbfs", "nsfs", "autofs", "rpc_pipefs", "selinuxfs",
    };

    /// <summary>
    /// Checks <paramref name="path"/> up front: it must name a regular file or nothing yet, in a
    /// directory where this user may create files. Returns the path to write (a symbolic link is
    /// followed, so the file it points to is replaced and the link kept). Throws <see cref="UsageException"/>.
    /// </summary>
    public static string Check(string path)
    {
        if (path.Length == 0)
        {
            throw new UsageException("--report: give a file name");
        }
        string target = Resolve(path);
        if (Problem(target) is { } problem)
        {
            throw new UsageException($"--report: {problem}");
        }
        string dir = Path.GetDirectoryName(target)!;
        if (!Directory.Exists(dir))
        {
            throw new UsageException($"--report: directory '{dir}' does not exist");
        }
        // Create (and remove) a file where the report will go: a read-only directory is found now, not after the migration.
        string probe = TempPath(target);
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
            }
            File.Delete(probe);
        }
        catch (UnauthorizedAccessException)
        {
            throw new UsageException($"--report: cannot create a file in '{dir}': permission denied");
        }
        catch (FileNotFoundException)
        {
            // What procfs and the like answer to a new name.
            throw new UsageException($"--report: cannot create a file in '{dir}': it takes no new files");
        }
        catch (IOException ex)
        {
            throw new UsageException($"--report: cannot create a file in '{dir}': {ex.Message}");
        }
        return target;
    }

    /// <summary>Writes the report; null when it was written, else why not (the old file, if any, is untouched).</summary>
    public static string? TryWrite(string target, ReadOnlySpan<byte> bytes)
    {
        // Checked again: the path may have changed during the migration.
        if (Problem(target) is { } problem)
        {
            return problem;
        }
        string tmp = TempPath(target);
        try
        {
            using (var file = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                file.Write(bytes);
                file.Flush(flushToDisk: true);
            }
            if (!OperatingSystem.IsWindows() && File.Exists(target))
            {
                // A replaced report keeps the permissions its owner gave it.
                File.SetUnixFileMode(tmp, File.GetUnixFileMode(target));
            }
            File.Move(tmp, target, overwrite: true);
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            try
            {
                File.Delete(tmp);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
                // Nothing more to clean.
            }
            return ex.Message;
        }
    }

    private static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        if (Path.EndsInDirectorySeparator(path))
        {
            return full;
        }
        try
        {
            if (new FileInfo(full).LinkTarget is not null && File.ResolveLinkTarget(full, returnFinalTarget: true) is { } final)
            {
                return final.FullName;
            }
        }
        catch (IOException)
        {
            // A link loop or an unreadable link: checked as it is below.
        }
        return full;
    }

    /// <summary>Why <paramref name="target"/> cannot take a report, or null (a regular file, or nothing yet).</summary>
    private static string? Problem(string target)
    {
        if (Directory.Exists(target) || Path.EndsInDirectorySeparator(target))
        {
            return $"'{target}' is a directory; give a file name";
        }
        var info = new FileInfo(target);
        if (!info.Exists)
        {
            return null;
        }
        if (Filesystem(target) is { } fs && PseudoFilesystems.Contains(fs))
        {
            return fs is "devtmpfs" or "devpts"
                ? $"'{target}' is a device, not a regular file; give a file name"
                : $"'{target}' is not a regular file (a file of the kernel's {fs} filesystem); give a file name";
        }
        if (info.Length > 0)
        {
            // Devices, fifos and sockets have no size: a file with bytes in it is a regular file.
            return null;
        }
        return EmptyFileProblem(target);
    }

    /// <summary>
    /// An existing file of length 0 is an empty regular file, a device, a fifo or a socket. Opened for
    /// reading and writing (which never blocks on a fifo, and writes nothing) and truncated to its
    /// length 0: only a regular file allows that.
    /// </summary>
    private static string? EmptyFileProblem(string target)
    {
        const string NotRegular = "is not a regular file (a device, fifo or socket); give a file name";
        try
        {
            using var file = new FileStream(target, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            if (!file.CanSeek)
            {
                return $"'{target}' {NotRegular}";
            }
            file.SetLength(0);
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return $"'{target}' exists and this user may not write it";
        }
        catch (Exception ex) when (ex is IOException or NotSupportedException)
        {
            return $"'{target}' {NotRegular}";
        }
    }

    private static string? Filesystem(string path)
    {
        try
        {
            return new DriveInfo(path).DriveFormat;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    private static string TempPath(string target) =>
        Path.Combine(Path.GetDirectoryName(target)!, $".{Path.GetFileName(target)}.{Guid.NewGuid():n}.tmp");
}
