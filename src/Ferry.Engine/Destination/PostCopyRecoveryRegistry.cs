using Ferry.Core.Migration;
using System.Collections.Concurrent;
using Ferry.Protocol;
using Ferry.Protocol.Framing;
using Ferry.Protocol.Messages;

namespace Ferry.Engine.Destination;

/// <summary>
/// Where a post-copy whose link broke waits for the source to come back. A destination whose
/// limits name a registry does not give up on a broken link after switchover: it registers the
/// migration here, its vCPUs keep waiting for missing pages (their page timeout paused), and
/// the next authenticated connection that opens with PostCopyResume for that migration is handed
/// to it. Without a registry a broken link ends post-copy at once.
/// </summary>
public sealed class PostCopyRecoveryRegistry
{
    private readonly ConcurrentDictionary<string, Slot> _waiting = new(StringComparer.Ordinal);

    private sealed record Slot(BlockingCollection<(Stream Stream, FrameReader Reader)> Connections, Action Superseded);

    /// <summary>Migrations now waiting for their source to reconnect.</summary>
    public IReadOnlyCollection<string> Waiting => _waiting.Keys.ToArray();

    /// <summary>
    /// Takes a new authenticated connection whose first frame must be PostCopyResume for a
    /// migration waiting here, and hands it over (the waiting session owns it from then on).
    /// Throws, without taking ownership, for anything else.
    /// </summary>
    public void Accept(Stream stream)
    {
        var reader = new FrameReader(stream);
        Frame first = reader.Read();
        if (first.Type != FrameType.PostCopyResume)
        {
            throw new ProtocolException(ProtocolErrorKind.UnexpectedFrame, $"expected PostCopyResume, got {first.Type}");
        }
        HandOver(stream, reader, first.Payload);
    }

    /// <summary>
    /// Hands a connection whose PostCopyResume frame was already read to the migration it names. The
    /// source opens a new connection only after giving up on the last one, so the newest wins: the
    /// migration's current connection is closed (it may look alive here while dead at the source),
    /// and a connection handed over earlier but not yet taken is dropped.
    /// </summary>
    internal void HandOver(Stream stream, FrameReader reader, ReadOnlySpan<byte> resumePayload)
    {
        string id = ControlJson.Decode<PostCopyResume>(resumePayload, "post-copy resume").MigrationId;
        if (!_waiting.TryGetValue(id, out var slot))
        {
            throw new MigrationFailedException(MigrationFailure.Refused, $"no post-copy of migration '{id}' is waiting to resume here");
        }
        lock (slot)
        {
            slot.Superseded();
            if (slot.Connections.TryTake(out var stale))
            {
                stale.Stream.Dispose();
            }
            if (!slot.Connections.TryAdd((stream, reader)))
            {
                throw new MigrationFailedException(MigrationFailure.Refused, $"post-copy of migration '{id}' cannot take another connection now");
            }
        }
    }

    /// <param name="superseded">Closes the migration's current connection when a newer one arrives; must not block.</param>
    internal void Register(string migrationId, Action superseded) =>
        _waiting.TryAdd(migrationId, new Slot(new BlockingCollection<(Stream, FrameReader)>(boundedCapacity: 1), superseded));

    internal void Unregister(string migrationId)
    {
        if (_waiting.TryRemove(migrationId, out var slot))
        {
            // A connection handed over after the migration's last take: nobody else will close it.
            while (slot.Connections.TryTake(out var left))
            {
                left.Stream.Dispose();
            }
        }
    }

    /// <summary>Waits for the source's new connection. False when none came within <paramref name="timeout"/>.</summary>
    internal bool TryTake(string migrationId, TimeSpan timeout, out Stream stream, out FrameReader reader)
    {
        stream = Stream.Null;
        reader = null!;
        if (!_waiting.TryGetValue(migrationId, out var slot) || !slot.Connections.TryTake(out var taken, timeout))
        {
            return false;
        }
        (stream, reader) = taken;
        return true;
    }
}
