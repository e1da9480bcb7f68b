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
        ReadExactly(stream, reply, "server hello");
        if (!reply[..8].SequenceEqual(ServerMagic))
        {
            throw new ProtocolException(ProtocolErrorKind.BadMagic, "peer is not a Ferry migration endpoint (bad server hello magic)");
        }
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
            throw new ProtocolException(ProtocolErrorKind.AuthenticationFailed, "peer could not prove it holds the cluster key");
        }
        stream.Write(key.Mac(Transcript("ferry/1 client", nonceC, nonceS)));
        stream.Flush();
        Span<byte> verdict = stackalloc byte[VerdictSize];
        ReadExactly(stream, verdict, "handshake verdict");
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
        ReadExactly(stream, hello, "client hello");
        if (!hello[..8].SequenceEqual(ClientMagic))
        {
            throw new ProtocolException(ProtocolErrorKind.BadMagic, "client is not a Ferry migration source (bad hello magic)");
        }
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
        ReadExactly(stream, proof, "client key proof");
        bool ok = key.Verify(Transcript("ferry/1 client", nonceC, nonceS), proof);
        stream.Write(ok ? VerdictOk : VerdictNo);
        stream.Flush();
        if (!ok)
        {
            throw new ProtocolException(ProtocolErrorKind.AuthenticationFailed, "client could not prove it holds the cluster key");
        }
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

    private static void ReadExactly(Stream stream, Span<byte> target, string what)
    {
        int got = 0;
        while (got < target.Length)
        {
            int n = stream.Read(target[got..]);
            if (n == 0)
            {
                throw new ProtocolException(ProtocolErrorKind.Truncated, $"connection closed during the handshake ({what}: {got} of {target.Length} bytes)");
            }
            got += n;
        }
    }
}
