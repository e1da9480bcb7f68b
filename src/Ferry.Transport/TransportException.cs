namespace Ferry.Transport;

/// <summary>Why a migration connection could not be set up, in one line (refused by the peer, or refused here).</summary>
public sealed class TransportException(string message, Exception? inner = null) : Exception(message, inner);
