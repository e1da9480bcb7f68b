using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Ferry.Protocol.Handshake;

/// <summary>
/// Mutual proof of the cluster key before any frame (docs/protocol.md, "Handshake"):
/// <code>
/// client → server  ClientHello  48 B  "FERRYMIG" u16 version u16 0 u32 0, nonceC[32]
/// server → client  ServerHello  80 B  "FERRYACK" u16 version u16 status u32 0, nonceS[32], HMAC(key, "ferry/1 server" nonceC nonceS)
/// client → server  ClientProof  32 B  HMAC(key, "ferry/1 client" nonceC nonceS)
/// server → client  Verdict       8 B  "FERRY-OK" or "FERRY-NO"
/// </code>
/// The two MACs carry different labels so one side's proof cannot be reflected as the other's.
/// Each side checks the 8-byte magic as soon as it arrives, so a peer speaking another protocol
/// (which may send a short greeting and then wait) is refused at once instead of waited for.
/// A client that rejects the server's proof still answers with 32 zero bytes in place of its own,
/// so the server ends with <see cref="ProtocolErrorKind.AuthenticationFailed"/> rather than waiting.
/// </summary>
public static class MigrationHandshake
{
    public const int ClientHelloSize = 48;
    public const int ServerHelloSize = 80;
    public const int ProofSize = 32;
    public const int VerdictSize = 8;
    private static ReadOnlySpan<byte> ClientMagic => "FERRYMIG"u8;
    private static ReadOnlySpan<byte> ServerMagic => "FERRYACK"u8;
    private static ReadOnlySpan<byte> VerdictOk => "FERRY-OK"u8;
    private static ReadOnlySpan<byte> VerdictNo => "FERRY-NO"u8;

    private const ushort StatusOk = 0;
    private const ushort StatusVersionUnsupported = 1;

    /// <summary>Runs the client side; throws <see cref="ProtocolException"/> when the server is not a Ferry peer of this cluster.</summary>
    public static void RunClient(Stream stream, ClusterKey key)
    {
        Span<byte> hello = stackalloc byte[ClientHelloSize];
        ClientMagic.CopyTo(hello);
        BinaryPrimitives.WriteUInt16LittleEndian(hello[8..], ProtocolVersion.Current);
        hello[10..16].Clear();
        byte[] nonceC = RandomNumberGenerator.GetBytes(32);
        nonceC.CopyTo(hello[16..]);
        stream.Write(hello);
        stream.Flush();

        Span<byte> reply = stackalloc byte[ServerHelloSize];
        ReadExactly(stream, reply, 0, 8, "server hello");
        if (!reply[..8].SequenceEqual(ServerMagic))
        {
            throw new ProtocolException(ProtocolErrorKind.BadMagic, "peer is not a Ferry migration endpoint (bad server hello magic)");
        }
        ReadExactly(stream, reply, 8, ServerHelloSize, "server hello");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(reply[8..]);
        ushort status = BinaryPrimitives.ReadUInt16LittleEndian(reply[10..]);
        if (status == StatusVersionUnsupported || version != ProtocolVersion.Current)
        {
            throw new ProtocolException(ProtocolErrorKind.UnsupportedVersion,
                $"peer does not speak protocol version {ProtocolVersion.Current} (it offered {version})");
        }
        byte[] nonceS = reply[16..48].ToArray();
        if (!key.Verify(Transcript("ferry/1 server", nonceC, nonceS), reply[48..80]))
        {
            // Answer with a non-proof so the server fails now instead of waiting for ours.
            TryWrite(stream, new byte[ProofSize]);
            throw new ProtocolException(ProtocolErrorKind.AuthenticationFailed, "peer could not prove it holds the cluster key");
        }
        stream.Write(key.Mac(Transcript("ferry/1 client", nonceC, nonceS)));
        stream.Flush();
        Span<byte> verdict = stackalloc byte[VerdictSize];
        ReadExactly(stream, verdict, 0, VerdictSize, "handshake verdict");
        if (verdict.SequenceEqual(VerdictNo))
        {
            throw new ProtocolException(ProtocolErrorKind.AuthenticationFailed, "peer refused our cluster key proof");
        }
        if (!verdict.SequenceEqual(VerdictOk))
        {
            throw new ProtocolException(ProtocolErrorKind.BadMagic, "peer sent a malformed handshake verdict");
        }
    }

    /// <summary>Runs the server side; throws <see cref="ProtocolException"/> (after telling the peer) when the client fails.</summary>
    public static void RunServer(Stream stream, ClusterKey key)
    {
        Span<byte> hello = stackalloc byte[ClientHelloSize];
        ReadExactly(stream, hello, 0, 8, "client hello");
        if (!hello[..8].SequenceEqual(ClientMagic))
        {
            throw new ProtocolException(ProtocolErrorKind.BadMagic, "client is not a Ferry migration source (bad hello magic)");
        }
        ReadExactly(stream, hello, 8, ClientHelloSize, "client hello");
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(hello[8..]);
        byte[] nonceC = hello[16..48].ToArray();
        byte[] nonceS = RandomNumberGenerator.GetBytes(32);
        Span<byte> reply = stackalloc byte[ServerHelloSize];
        ServerMagic.CopyTo(reply);
        BinaryPrimitives.WriteUInt16LittleEndian(reply[8..], ProtocolVersion.Current);
        bool versionOk = version >= ProtocolVersion.Oldest && version <= ProtocolVersion.Current;
        BinaryPrimitives.WriteUInt16LittleEndian(reply[10..], versionOk ? StatusOk : StatusVersionUnsupported);
        reply[12..16].Clear();
        nonceS.CopyTo(reply[16..]);
        if (versionOk)
        {
            key.Mac(Transcript("ferry/1 server", nonceC, nonceS)).CopyTo(reply[48..]);
        }
        else
        {
            reply[48..].Clear();
        }
        stream.Write(reply);
        stream.Flush();
        if (!versionOk)
        {
            throw new ProtocolException(ProtocolErrorKind.UnsupportedVersion, $"client speaks protocol version {version}; this agent speaks {ProtocolVersion.Current}");
        }
        Span<byte> proof = stackalloc byte[ProofSize];
        ReadExactly(stream, proof, 0, ProofSize, "client key proof");
        if (!key.Verify(Transcript("ferry/1 client", nonceC, nonceS), proof))
        {
            // The client may already have hung up; the failure to report is the proof, not the write.
            TryWrite(stream, VerdictNo);
            throw new ProtocolException(ProtocolErrorKind.AuthenticationFailed, "client could not prove it holds the cluster key");
        }
        stream.Write(VerdictOk);
        stream.Flush();
    }

    private static byte[] Transcript(string label, byte[] nonceC, byte[] nonceS)
    {
        byte[] l = Encoding.ASCII.GetBytes(label);
        byte[] t = new byte[l.Length + 64];
        l.CopyTo(t, 0);
        nonceC.CopyTo(t, l.Length);
        nonceS.CopyTo(t, l.Length + 32);
        return t;
    }

    private static void TryWrite(Stream stream, ReadOnlySpan<byte> bytes)
    {
        try
        {
            stream.Write(bytes);
            stream.Flush();
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Reads bytes [<paramref name="from"/>, <paramref name="to"/>) of a handshake message.</summary>
    private static void ReadExactly(Stream stream, Span<byte> message, int from, int to, string what)
    {
        int got = from;
        while (got < to)
        {
            int n = stream.Read(message[got..to]);
            if (n == 0)
            {
                throw new ProtocolException(ProtocolErrorKind.Truncated, $"connection closed during the handshake ({what}: {got} of {message.Length} bytes)");
            }
            got += n;
        }
    }
}
