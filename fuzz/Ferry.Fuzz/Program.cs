using Ferry.Fuzz;
using SharpFuzz;

// ferry-fuzz TARGET              under afl-fuzz (after `sharpfuzz` instrumented the assemblies): the fork server
// ferry-fuzz TARGET FILE|DIR...  replays inputs without a fuzzer; prints each finding with its stack; exit 1 if any
// ferry-fuzz seeds DIR           writes the seed corpus (DIR/<target>/...) from real encodings
// ferry-fuzz list                the targets and their input formats
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: ferry-fuzz TARGET [FILE|DIR...] | seeds DIR | list");
    return 2;
}
if (args[0] == "list")
{
    foreach (FuzzTarget t in Targets.All)
    {
        Console.WriteLine($"{t.Name,-14} {t.Input}");
    }
    return 0;
}
if (args[0] == "seeds")
{
    if (args.Length != 2)
    {
        Console.Error.WriteLine("usage: ferry-fuzz seeds DIR");
        return 2;
    }
    Seeds.WriteAll(args[1]);
    return 0;
}
FuzzTarget? target = Targets.Find(args[0]);
if (target is null)
{
    Console.Error.WriteLine($"unknown target '{args[0]}'; targets: {string.Join(", ", Targets.All.Select(t => t.Name))}");
    return 2;
}
if (args.Length > 1)
{
    return Replay.Run(target, args[1..]);
}
Fuzzer.Run(stream =>
{
    using var ms = new MemoryStream();
    stream.CopyTo(ms);
    Guard.Run(target, ms.ToArray());
});
return 0;
