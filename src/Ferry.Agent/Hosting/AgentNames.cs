using System.Net;
using System.Net.NetworkInformation;

namespace Ferry.Agent.Hosting;

/// <summary>
/// The authorities (host:port) by which this agent's API is addressed, for the signature check: the
/// API port, with one of this host's addresses, its name, a name from <c>--api-name</c>, or — on a
/// loopback connection only — localhost or a loopback address. A signed request names the agent it
/// is for; one made for another agent (another port, another host) is refused here.
/// </summary>
internal sealed class AgentNames
{
    private readonly int _port;
    private readonly HashSet<IPAddress> _addresses;
    private readonly HashSet<string> _names;

    public AgentNames(int port, IPAddress bound, IEnumerable<string> extraNames)
    {
        _port = port;
        _addresses = bound.Equals(IPAddress.Any) || bound.Equals(IPAddress.IPv6Any) ? LocalAddresses() : [bound];
        _names = new HashSet<string>(extraNames, StringComparer.OrdinalIgnoreCase) { Environment.MachineName, Dns.GetHostName() };
    }

    /// <summary>True when <paramref name="host"/> (a Host header) names this agent, as seen on a connection to <paramref name="local"/>.</summary>
    public bool Accepts(string host, IPAddress? local)
    {
        if (!TrySplit(host, out string name, out int port) || port != _port)
        {
            return false;
        }
        bool loopbackConnection = local is not null && IPAddress.IsLoopback(local);
        if (IPAddress.TryParse(name, out IPAddress? address))
        {
            // A loopback address names every host; it is this one only when the connection is local too.
            return IPAddress.IsLoopback(address) ? loopbackConnection : _addresses.Contains(address);
        }
        if (name.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            return loopbackConnection;
        }
        return _names.Contains(name);
    }

    private static bool TrySplit(string host, out string name, out int port)
    {
        name = "";
        port = 80;
        int colon = host.LastIndexOf(':');
        if (colon < 0 || host.EndsWith(']'))
        {
            // No port: HTTP's default.
            name = host.Trim('[', ']');
            return name.Length > 0;
        }
        if (colon == 0 || !int.TryParse(host.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out port))
        {
            return false;
        }
        name = host[..colon].Trim('[', ']');
        return name.Length > 0;
    }

    private static HashSet<IPAddress> LocalAddresses()
    {
        var set = new HashSet<IPAddress>();
        try
        {
            foreach (NetworkInterface nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                foreach (UnicastIPAddressInformation a in nic.GetIPProperties().UnicastAddresses)
                {
                    set.Add(a.Address);
                }
            }
        }
        catch (NetworkInformationException)
        {
            // No interface list: only names and loopback are accepted.
        }
        return set;
    }
}
