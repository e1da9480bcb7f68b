namespace Ferry.Fuzz;

/// <summary>
/// A property of a decoder that the harness checks itself failed (an allocation far out of
/// proportion to the input, a decoder that accepted what it should not, two decoders that
/// disagree). Thrown out of the target, so afl-fuzz records the input as a crash like any
/// undocumented exception.
/// </summary>
public sealed class FuzzFinding : Exception
{
    public FuzzFinding(string message)
        : base(message)
    {
    }

    public FuzzFinding(string message, Exception inner)
        : base(message, inner)
    {
    }
}
