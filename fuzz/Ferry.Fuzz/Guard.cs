namespace Ferry.Fuzz;

/// <summary>Runs a target on one input and turns an allocation out of proportion to it into a finding.</summary>
public static class Guard
{
    /// <summary>Every target may take this much (a frame reader's 4 MiB buffer, twice, and slack)…</summary>
    public const long BaseAllowance = 16L << 20;

    /// <summary>…plus this many bytes per input byte (strings decoded from JSON, copies of the input).</summary>
    public const long PerInputByte = 64;

    public static void Run(FuzzTarget target, byte[] input)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        target.Run(input);
        long used = GC.GetAllocatedBytesForCurrentThread() - before;
        long allowed = BaseAllowance + PerInputByte * input.Length;
        if (used > allowed)
        {
            throw new FuzzFinding($"{target.Name} allocated {used:N0} bytes for a {input.Length}-byte input (allowed {allowed:N0})");
        }
    }
}

/// <summary>Replays inputs through a target outside the fuzzer: how CI shows what a crash was.</summary>
public static class Replay
{
    public static int Run(FuzzTarget target, string[] paths)
    {
        int findings = 0, inputs = 0;
        foreach (string file in paths.SelectMany(Expand))
        {
            inputs++;
            byte[] input = File.ReadAllBytes(file);
            try
            {
                Guard.Run(target, input);
            }
            catch (Exception ex)
            {
                findings++;
                Console.WriteLine($"FINDING {target.Name} {file} ({input.Length} bytes)");
                Console.WriteLine(ex.ToString());
            }
        }
        Console.WriteLine($"{target.Name}: {inputs} inputs replayed, {findings} findings");
        return findings == 0 ? 0 : 1;
    }

    private static IEnumerable<string> Expand(string path) =>
        Directory.Exists(path)
            ? Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Where(f => !Path.GetFileName(f).StartsWith('.')).Order(StringComparer.Ordinal)
            : [path];
}
