using Ferry.Core.Migration;

namespace Ferry.Engine;

/// <summary>A migration ended without moving the VM; the message says why in one line.</summary>
public sealed class MigrationFailedException : Exception
{
    public MigrationFailedException(MigrationFailure kind, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
    }

    public MigrationFailure Kind { get; }
}
