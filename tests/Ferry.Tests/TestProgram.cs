using Ferry.Tests.Vm;

namespace Ferry.Tests;

/// <summary>
/// The test assembly's entry point (GenerateProgramFile is off). Under the test runner it is never
/// called; <c>dotnet Ferry.Tests.dll uffd-gc-probe MODE</c> runs a scenario that may hang the
/// whole process, which is why it needs a process of its own.
/// </summary>
public static class TestProgram
{
    public static int Main(string[] args) => args switch
    {
        [UffdGcProbe.Verb, string mode] => UffdGcProbe.Run(mode),
        _ => 0,
    };
}
