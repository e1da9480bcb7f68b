using System.Collections.Concurrent;
using Ferry.Core.Migration;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;

namespace Ferry.Engine.Destination;

/// <summary>
/// Where a migration that took page connections waits for them. The agent's listener hands every
/// authenticated connection whose first frame is PageChannel here, and the migration it names
/// takes it; a connection for no such migration (or one it did not agree to) is refused. Without
/// a registry the destination takes no page connections: every frame comes on the control one.
/// </summary>
public sealed class PageChannelRegistry
{
    private readonly ConcurrentDictionary<string, Slot> _slots = new(StringComparer.Ordinal);

    private sealed record Slot(int Channels, Func<PageChannelHello, Stream, FrameReader, bool> Join);

    /// <param name="join">Takes a page connection; false to refuse it (an earlier generation). Must not block.</param>
    internal void Register(string migrationId, int channels, Func<PageChannelHello, Stream, FrameReader, bool> join) =>
        _slots[migrationId] = new Slot(channels, join);

    internal void Unregister(string migrationId) => _slots.TryRemove(migrationId, out _);

    /// <summary>Hands a connection whose PageChannel frame was read to its migration (which owns it from then on). Throws, without taking it, when nobody may.</summary>
    internal void HandOver(Stream stream, FrameReader reader, ReadOnlySpan<byte> helloPayload)
    {
        PageChannelHello hello = ControlJson.Decode<PageChannelHello>(helloPayload, "page channel");
        if (!_slots.TryGetValue(hello.MigrationId, out Slot? slot))
        {
            throw new MigrationFailedException(MigrationFailure.Refused, $"no migration '{hello.MigrationId}' waits here for page connections");
        }
        if (hello.Channel < 0 || hello.Channel >= slot.Channels)
        {
            throw new MigrationFailedException(MigrationFailure.Refused,
                $"migration '{hello.MigrationId}' took {slot.Channels} page connections; this one says it is number {hello.Channel}");
        }
        if (!slot.Join(hello, stream, reader))
        {
            throw new MigrationFailedException(MigrationFailure.Refused,
                $"page connection {hello.Channel} of migration '{hello.MigrationId}' belongs to an earlier generation ({hello.Generation})");
        }
    }
}
