using System.Net;
using System.Net.Sockets;
using Ferry.Agent.Migrations;

namespace Ferry.EndToEnd.Tests;

/// <summary>The source's migration connection is set up so post-copy answers are not buried under pushed pages.</summary>
public sealed class MigrationSocketTests
{
    [Fact]
    public void The_source_connection_caps_unsent_bytes_on_linux()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var stream = (NetworkStream)MigrationManager.Connect((IPEndPoint)listener.LocalEndPoint!, CancellationToken.None);
        using Socket accepted = listener.Accept();
        Assert.True(stream.Socket.NoDelay);
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        byte[] value = new byte[4];
        // IPPROTO_TCP, TCP_NOTSENT_LOWAT
        int length = stream.Socket.GetRawSocketOption(6, 25, value);
        Assert.Equal(4, length);
        Assert.Equal(MigrationManager.UnsentBytesLimit, BitConverter.ToInt32(value));
    }
}
