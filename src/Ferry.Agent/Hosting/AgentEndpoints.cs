namespace Ferry.Agent.Hosting;

/// <summary>The addresses the agent actually bound (ports chosen by the kernel when 0 was asked for).</summary>
public sealed class AgentEndpoints
{
    public string Api { get; set; } = "";
    public string Migration { get; set; } = "";
}
