namespace Ferry.Protocol.Messages;

/// <summary>How one page travels in a page batch. Wire constants: never renumber.</summary>
public enum PageEncoding : byte
{
    /// <summary>4096 raw bytes follow.</summary>
    Raw = 0,

    /// <summary>The page is all zeros; nothing follows.</summary>
    Zero = 1,
}
