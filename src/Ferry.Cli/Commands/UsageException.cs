namespace Ferry.Cli.Commands;

/// <summary>A wrong option or value: printed as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
