using System.Diagnostics;
using System.Globalization;

namespace Ferry.Tests.Native;

/// <summary>
/// Compiles and runs a C program that prints <c>name=value</c> lines (constants, sizeof, offsetof)
/// from the system headers, so the C# declarations can be compared with what the C compiler sees.
/// </summary>
internal static class CProbeProgram
{
    /// <summary>Compile and run bounds: gcc on a tiny file takes well under a second; these only stop a hang.</summary>
    private static readonly TimeSpan CompileTimeout = TimeSpan.FromSeconds(60);

    public static Dictionary<string, ulong> Run(string compiler, string source)
    {
        string dir = Directory.CreateTempSubdirectory("ferry-cprobe-").FullName;
        try
        {
            string c = Path.Combine(dir, "probe.c");
            string exe = Path.Combine(dir, "probe");
            File.WriteAllText(c, source);
            (int rc, string output, string errors) = Exec(compiler, ["-std=gnu11", "-Wall", "-Werror", "-o", exe, c]);
            if (rc != 0)
            {
                throw new InvalidOperationException($"{compiler} failed (exit {rc}):\n{errors}{output}");
            }
            (rc, output, errors) = Exec(exe, []);
            if (rc != 0)
            {
                throw new InvalidOperationException($"probe program failed (exit {rc}):\n{errors}");
            }
            var values = new Dictionary<string, ulong>(StringComparer.Ordinal);
            foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                int eq = line.LastIndexOf('=');
                values[line[..eq]] = ulong.Parse(line[(eq + 1)..], NumberStyles.None, CultureInfo.InvariantCulture);
            }
            return values;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (int ExitCode, string Output, string Errors) Exec(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(CompileTimeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish within {CompileTimeout.TotalSeconds} s");
        }
        return (p.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }
}
