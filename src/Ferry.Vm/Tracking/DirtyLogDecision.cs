namespace Ferry.Vm.Tracking;

/// <summary>The backend a dirty-log choice resolves to on a host, and why, as it appears in reports.</summary>
public readonly record struct DirtyLogDecision(string Backend, string Reason)
{
    public bool IsKernel => Backend == "kernel";
}
