using System.Buffers.Binary;
using System.Net.Sockets;
using Ferry.Native.Interop;

namespace Ferry.Native.Linux;

/// <summary>
/// How much a TCP connection has delivered: the peer's acknowledged byte count (tcpi_bytes_acked),
/// read with getsockopt(TCP_INFO) through the managed socket API, no P/Invoke. Differences over
/// time give the rate the link actually carries, queues included.
/// </summary>
public static class TcpDelivery
{
    /// <summary>Bytes acknowledged so far. False off Linux, on a kernel too old to report it, or on a closed socket.</summary>
    public static bool TryReadBytesAcked(Socket socket, out ulong bytesAcked)
    {
        bytesAcked = 0;
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        Span<byte> info = stackalloc byte[Libc.TcpInfoSize];
        int length;
        try
        {
            length = socket.GetRawSocketOption(Libc.IPPROTO_TCP, Libc.TCP_INFO, info);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return false;
        }
        return TryParseBytesAcked(info[..length], out bytesAcked);
    }

    /// <summary>Reads tcpi_bytes_acked out of a struct tcp_info as the kernel returned it (possibly shorter, from an older kernel).</summary>
    public static bool TryParseBytesAcked(ReadOnlySpan<byte> info, out ulong bytesAcked)
    {
        bytesAcked = 0;
        if (info.Length < Libc.TcpInfoBytesAckedOffset + sizeof(ulong))
        {
            return false;
        }
        bytesAcked = BinaryPrimitives.ReadUInt64LittleEndian(info[Libc.TcpInfoBytesAckedOffset..]);
        return true;
    }
}
