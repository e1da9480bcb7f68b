namespace Ferry.Tests.Support;

/// <summary>
/// A fact that runs only on Linux with what it <paramref name="needs"/>, and otherwise is
/// reported as skipped with the reason. xunit 2 has no dynamic skip, so the attribute decides
/// when it is constructed (at discovery), from the host capability probe.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute(HostNeeds needs = HostNeeds.None)
    {
        Needs = needs;
        Skip = HostRequirements.WhyNot(needs);
    }

    public HostNeeds Needs { get; }
}
