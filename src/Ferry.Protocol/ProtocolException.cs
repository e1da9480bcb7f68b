namespace Ferry.Protocol;

public enum ProtocolErrorKind
{
    BadMagic,
    UnsupportedVersion,
    AuthenticationFailed,
    Truncated,
    ChecksumMismatch,
    BadSequence,
    FrameTooLarge,
    MalformedFrame,
    UnexpectedFrame,
    PeerAborted,
}

/// <summary>The peer sent something Ferry will not accept. The migration ends; nothing from the bad frame is applied.</summary>
public sealed class ProtocolException : Exception
{
    public ProtocolException(ProtocolErrorKind kind, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
    }

    public ProtocolErrorKind Kind { get; }

    /// <summary>For <see cref="ProtocolErrorKind.Truncated"/>: the stream ended cleanly between two frames (the peer closed it), not inside one.</summary>
    public bool AtFrameBoundary { get; init; }
}
