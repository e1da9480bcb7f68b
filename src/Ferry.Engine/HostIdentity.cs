using System.Runtime.InteropServices;
using Ferry.Core.Reporting;

namespace Ferry.Engine;

public static class HostIdentity
{
    public static HostInfo Local(string endpoint) => new()
    {
        HostName = Environment.MachineName,
        Endpoint = endpoint,
        Os = RuntimeInformation.OSDescription,
        ProcessorCount = Environment.ProcessorCount,
    };
}
