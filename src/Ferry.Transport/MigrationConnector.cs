using System.Net;
using System.Net.Sockets;
using Ferry.Protocol;
using Ferry.Protocol.Handshake;
using Ferry.Transport.Tls;

namespace Ferry.Transport;

/// <summary>The source's side of a migration connection: connect, tune, TLS (when configured), then the cluster-key handshake.</summary>
public static class MigrationConnector
{
    /// <summary>An authenticated connection to <paramref name="endpoint"/>. Throws <see cref="TransportException"/> (or the handshake's <see cref="ProtocolException"/>) with the reason.</summary>
    public static MigrationConnection Connect(IPEndPoint endpoint, TransportOptions options, CancellationToken ct)
    {
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            MigrationConnection c = ConnectOnce(endpoint, options, ct);
            TransportLog.Connected(options.Logger, endpoint.ToString(), c.Encrypted ? "TLS" : "plain TCP", System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return c;
        }
        catch (Exception ex) when (ex is TransportException or ProtocolException)
        {
            TransportLog.ConnectFailed(options.Logger, endpoint.ToString(), ex.Message);
            throw;
        }
    }

    private static MigrationConnection ConnectOnce(IPEndPoint endpoint, TransportOptions options, CancellationToken ct)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                timeout.CancelAfter(options.ConnectTimeout);
                try
                {
                    socket.ConnectAsync(endpoint, timeout.Token).AsTask().GetAwaiter().GetResult();
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new TransportException($"cannot connect to {endpoint}: no answer within {options.ConnectTimeout.TotalSeconds:0} s");
                }
                catch (SocketException s)
                {
                    throw new TransportException($"cannot connect to {endpoint}: {s.Message}", s);
                }
            }
            SocketTuning.ForSending(socket, options);
            return Authenticate(socket, options, endpoint.ToString(), client: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// TLS (when configured) and the key handshake on a connected socket, either side, each bounded
    /// by <see cref="TransportOptions.HandshakeTimeout"/> so a silent peer costs one attempt, not a hang.
    /// Every failure is a <see cref="TransportException"/> (or the key handshake's
    /// <see cref="ProtocolException"/>) whose message says what the peer did and what this host expected.
    /// </summary>
    internal static MigrationConnection Authenticate(Socket socket, TransportOptions options, string remote, bool client)
    {
        // The stream owns the socket: closing it (as a cut link or a finished migration does) closes the connection.
        var net = new NetworkStream(socket, ownsSocket: true);
        Stream stream = net;
        try
        {
            int limit = (int)Math.Min(int.MaxValue, options.HandshakeTimeout.TotalMilliseconds);
            socket.ReceiveTimeout = limit;
            socket.SendTimeout = limit;
            // The timeout bounds the whole handshake, not each read: a peer sending a byte every 6 s kept a
            // connection in its handshake for 56 s under a per-read 10 s limit. 0 = running, 1 = done, 2 = expired.
            int state = 0;
            using var deadline = new Timer(_ =>
            {
                if (Interlocked.CompareExchange(ref state, 2, 0) == 0)
                {
                    socket.Dispose();
                }
            }, null, options.HandshakeTimeout, Timeout.InfiniteTimeSpan);
            try
            {
                if (options.Tls is { } tls)
                {
                    // A plain source's first bytes are the key handshake's "FERRYMIG": refuse it by name
                    // rather than letting SslStream fail on it with a generic record error.
                    if (!client && PeekFirstByte(socket) is { } first && first != TlsLayer.HandshakeRecord)
                    {
                        throw new TransportException($"connection from {remote} refused: it did not start TLS (this agent requires TLS; "
                            + "give the source agent --tls-cert, --tls-key and --tls-ca)");
                    }
                    stream = client ? TlsLayer.Client(net, tls, remote) : TlsLayer.Server(net, tls, remote);
                }
                else if (!client && PeekFirstByte(socket) == TlsLayer.HandshakeRecord)
                {
                    throw new TransportException($"connection from {remote} refused: it started TLS, and this agent runs without TLS "
                        + "(give both agents --tls-cert, --tls-key and --tls-ca, or neither)");
                }
                RunKeyHandshake(stream, options, remote, client);
                if (Interlocked.CompareExchange(ref state, 1, 0) != 0)
                {
                    throw new TimeoutException("handshake deadline passed");
                }
            }
            catch (Exception ex) when (TimedOut(ex) || Volatile.Read(ref state) == 2)
            {
                throw new TransportException($"no handshake within {options.HandshakeTimeout.TotalSeconds:0.###} s from {remote}", ex);
            }
            socket.ReceiveTimeout = 0;
            socket.SendTimeout = 0;
            return new MigrationConnection(stream, socket, options.Tls is not null, remote);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The cluster-key handshake. A peer that closes before sending a byte of it is saying something
    /// the handshake's own error ("connection closed during the handshake") does not: a TLS agent
    /// closes on a plain source that way, and a TLS peer that refused this host's certificate
    /// (which in TLS 1.3 it does only after the TLS handshake is through) too.
    /// </summary>
    private static void RunKeyHandshake(Stream stream, TransportOptions options, string remote, bool client)
    {
        // The handshake reads only its own bytes, so the counter can stand in front of the stream for
        // the handshake alone; the connection keeps the stream itself.
        var counted = new ReadCountingStream(stream);
        try
        {
            if (client)
            {
                MigrationHandshake.RunClient(counted, options.Key);
            }
            else
            {
                MigrationHandshake.RunServer(counted, options.Key);
            }
        }
        catch (Exception ex) when (counted.BytesRead == 0 && PeerClosed(ex) && (client || options.Tls is not null))
        {
            throw new TransportException(options.Tls is { } tls
                ? TlsLayer.RefusedOurCertificate(tls, remote, client)
                : $"connection to {remote} refused: it closed the connection without answering the key handshake, as an agent that requires TLS does (this host runs without TLS)", ex);
        }
    }

    /// <summary>The peer closed or reset the connection (as opposed to staying silent).</summary>
    private static bool PeerClosed(Exception ex) =>
        ex is ProtocolException { Kind: ProtocolErrorKind.Truncated } || SocketErrorIn(ex) is SocketError.ConnectionReset or SocketError.ConnectionAborted;

    /// <summary>A read or write ran into the handshake timeout set on the socket.</summary>
    private static bool TimedOut(Exception ex) => SocketErrorIn(ex) is SocketError.TimedOut;

    /// <summary>A socket's send or receive limit ran out under this exception (however wrapped).</summary>
    internal static bool IsTimeout(Exception ex) => TimedOut(ex);

    /// <summary>The socket error under a stream or TLS exception (SslStream wraps the socket's in one or two IOExceptions).</summary>
    private static SocketError? SocketErrorIn(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (e is SocketException s)
            {
                return s.SocketErrorCode;
            }
        }
        return null;
    }

    /// <summary>
    /// The first byte the peer sent, without taking it; null if it closed first. A timeout is thrown,
    /// not swallowed: the handshake after the peek would only wait out the same timeout again.
    /// </summary>
    private static byte? PeekFirstByte(Socket socket)
    {
        Span<byte> one = stackalloc byte[1];
        try
        {
            return socket.Receive(one, SocketFlags.Peek) == 1 ? one[0] : null;
        }
        catch (SocketException s) when (s.SocketErrorCode is not SocketError.TimedOut)
        {
            return null;
        }
    }
}
