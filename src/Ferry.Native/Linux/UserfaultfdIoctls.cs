namespace Ferry.Native.Linux;

/// <summary>
/// The ioctls a uffd or a registered range supports: bit n is set when _UFFDIO_* command n is
/// available (uffdio_api.ioctls and uffdio_register.ioctls).
/// </summary>
[Flags]
public enum UserfaultfdIoctls : ulong
{
    None = 0,
    Register = 1UL << 0x00,
    Unregister = 1UL << 0x01,
    Wake = 1UL << 0x02,
    Copy = 1UL << 0x03,
    ZeroPage = 1UL << 0x04,
    WriteProtect = 1UL << 0x06,
    Continue = 1UL << 0x07,
    Api = 1UL << 0x3F,
}
