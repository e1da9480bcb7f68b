namespace Ferry.Native.Interop;

/// <summary>linux/tcp.h: the parts of struct tcp_info read through getsockopt(TCP_INFO). NativeLayoutTests checks them against the header.</summary>
internal static partial class Libc
{
    internal const int IPPROTO_TCP = 6;
    internal const int TCP_INFO = 11;

    /// <summary>sizeof(struct tcp_info) in the 6.1 headers; newer kernels append fields and return at most what is asked for.</summary>
    internal const int TcpInfoSize = 232;

    /// <summary>offsetof(struct tcp_info, tcpi_bytes_acked): u64, bytes the peer has acknowledged on this connection (RFC 4898).</summary>
    internal const int TcpInfoBytesAckedOffset = 120;
}
