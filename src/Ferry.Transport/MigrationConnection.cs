using System.Net.Sockets;
using Ferry.Core.Pacing;

namespace Ferry.Transport;

/// <summary>
/// One authenticated migration connection: the stream the engine reads and writes (TLS inside when
/// configured, the key handshake done), and the TCP socket under it for what only TCP can tell.
/// </summary>
public sealed class MigrationConnection : IDisposable
{
    internal MigrationConnection(Stream stream, Socket socket, bool encrypted, string remote)
    {
        Stream = stream;
        Socket = socket;
        Encrypted = encrypted;
        Remote = remote;
    }

    public Stream Stream { get; }

    public Socket Socket { get; }

    /// <summary>True when TLS protects the connection.</summary>
    public bool Encrypted { get; }

    /// <summary>The peer's address, for logs.</summary>
    public string Remote { get; }

    /// <summary>Bytes the peer has acknowledged (TCP's tcpi_bytes_acked), or null where the kernel does not say.</summary>
    public LinkDelivery? Delivered() =>
        Native.Linux.TcpDelivery.TryReadBytesAcked(Socket, out ulong acked) ? new LinkDelivery(acked) : null;

    public void Dispose()
    {
        Stream.Dispose();
        Socket.Dispose();
    }
}
