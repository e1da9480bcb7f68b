using System.Diagnostics;
using System.Net.Sockets;

namespace Ferry.Bench;

/// <summary>
/// The baseline the stream benchmark is held against: a plain .NET TCP stream over loopback with
/// the same socket settings as the migration (<see cref="LoopbackMigration.ConnectedPair"/>: NoDelay,
/// the agent's buffer sizes), 1 MiB application buffers, one sender thread and one receiver thread
/// that discards into a reused buffer. No framing, no checksums, no page installs.
/// </summary>
internal static class RawTcp
{
    public const int BufferSize = 1 << 20;

    /// <param name="Seconds">From the sender's first write to the receiver's last byte.</param>
    /// <param name="Sender">The sender thread's CPU time and faults.</param>
    /// <param name="Receiver">The receiver thread's CPU time and faults.</param>
    public sealed record Result(long Bytes, double Seconds, ThreadCpu Sender, ThreadCpu Receiver)
    {
        public double BytesPerSecond => Bytes / Seconds;
    }

    /// <summary>Moves exactly <paramref name="bytes"/> bytes.</summary>
    public static Result Measure(long bytes, TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        var (client, server) = LoopbackMigration.ConnectedPair();
        int timeoutMs = (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds);
        client.SendTimeout = timeoutMs;
        server.ReceiveTimeout = timeoutMs;
        using var sendStream = new NetworkStream(client, ownsSocket: true);
        using var recvStream = new NetworkStream(server, ownsSocket: true);
        long started = 0;
        long finished = 0;
        Exception? sendError = null;
        Exception? recvError = null;
        ThreadCpu senderCpu = ThreadCpu.Zero;
        ThreadCpu receiverCpu = ThreadCpu.Zero;

        var receiver = new Thread(() =>
        {
            ThreadCpu cpu0 = ThreadCpu.Now();
            try
            {
                byte[] buffer = GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);
                long got = 0;
                while (got < bytes)
                {
                    int n = recvStream.Read(buffer, 0, (int)Math.Min(buffer.Length, bytes - got));
                    if (n == 0)
                    {
                        throw new IOException($"sender closed after {got} of {bytes} bytes");
                    }
                    got += n;
                }
                Volatile.Write(ref finished, Stopwatch.GetTimestamp());
            }
            catch (Exception ex)
            {
                recvError = ex;
            }
            finally
            {
                receiverCpu = ThreadCpu.Now() - cpu0;
            }
        })
        { IsBackground = true, Name = "rawtcp-receiver" };

        var sender = new Thread(() =>
        {
            ThreadCpu cpu0 = ThreadCpu.Now();
            try
            {
                byte[] buffer = GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);
                Random.Shared.NextBytes(buffer);
                long left = bytes;
                Volatile.Write(ref started, Stopwatch.GetTimestamp());
                while (left > 0)
                {
                    int n = (int)Math.Min(buffer.Length, left);
                    sendStream.Write(buffer, 0, n);
                    left -= n;
                }
            }
            catch (Exception ex)
            {
                sendError = ex;
            }
            finally
            {
                senderCpu = ThreadCpu.Now() - cpu0;
            }
        })
        { IsBackground = true, Name = "rawtcp-sender" };

        receiver.Start();
        sender.Start();
        bool ok = sender.Join(timeout) & receiver.Join(timeout);
        if (!ok)
        {
            // Closing both ends unblocks whichever thread is stuck; the socket timeouts bound the rest.
            sendStream.Dispose();
            recvStream.Dispose();
            sender.Join(TimeSpan.FromSeconds(10));
            receiver.Join(TimeSpan.FromSeconds(10));
            throw new TimeoutException($"raw TCP transfer of {bytes} bytes did not finish within {timeout.TotalSeconds:0} s");
        }
        Exception? e = sendError ?? recvError;
        if (e is not null)
        {
            throw new IOException("raw TCP transfer failed: " + e.Message, e);
        }
        return new Result(bytes, (finished - started) / (double)Stopwatch.Frequency, senderCpu, receiverCpu);
    }
}
