namespace Ferry.Protocol;

public static class ProtocolVersion
{
    public const ushort Current = 1;
    public const ushort Oldest = 1;
}
