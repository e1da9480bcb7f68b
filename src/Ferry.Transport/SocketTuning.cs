using System.Net.Sockets;

namespace Ferry.Transport;

/// <summary>The socket options every migration connection gets, at both ends.</summary>
internal static class SocketTuning
{
    private const int IpProtoTcp = 6;
    private const int TcpNotSentLowat = 25;

    public static void ForSending(Socket socket, TransportOptions options)
    {
        socket.NoDelay = true;
        socket.SendBufferSize = options.SendBufferBytes;
        LimitUnsentBytes(socket, options.UnsentBytesLimit);
    }

    public static void ForReceiving(Socket socket, TransportOptions options)
    {
        socket.NoDelay = true;
        socket.ReceiveBufferSize = options.ReceiveBufferBytes;
    }

    private static void LimitUnsentBytes(Socket socket, int limit)
    {
        if (!OperatingSystem.IsLinux() || limit <= 0)
        {
            return;
        }
        try
        {
            socket.SetRawSocketOption(IpProtoTcp, TcpNotSentLowat, BitConverter.GetBytes(limit));
        }
        catch (SocketException)
        {
            // An older kernel without the option: migration works, page answers just queue longer.
        }
    }

    /// <summary>The current value of TCP_NOTSENT_LOWAT (for tests), or null where it cannot be read.</summary>
    public static int? UnsentBytesLimit(Socket socket)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        Span<byte> value = stackalloc byte[4];
        return socket.GetRawSocketOption(IpProtoTcp, TcpNotSentLowat, value) == 4 ? BitConverter.ToInt32(value) : null;
    }
}
