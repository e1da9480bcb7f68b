using Ferry.Core.Pacing;
using Ferry.Engine;

namespace Ferry.Transport;

/// <summary>
/// A source's further connections over loopback, for tests and benchmarks: each <see cref="Open"/>
/// is a fresh <see cref="LoopbackPair"/> whose server end goes, on a thread of its own, to
/// <paramref name="serve"/> — what an agent's listener does with an accepted connection (hand it to
/// a destination session, which dispatches it by its first frame).
/// </summary>
public sealed class LoopbackLinks(TransportOptions options, Action<MigrationConnection> serve) : ISourceLinks
{
    public bool CanOpen => true;

    public Stream Open(CancellationToken ct)
    {
        var (client, server) = LoopbackPair.Open(options);
        new Thread(() =>
        {
            try
            {
                serve(server);
            }
            catch (Exception)
            {
                server.Dispose();
            }
        }) { IsBackground = true, Name = "ferry-loopback-serve" }.Start();
        return client.Stream;
    }

    public LinkDelivery? Delivered(Stream stream) => null;

    public bool IsStall(Exception error) => MigrationConnector.IsTimeout(error);
}
