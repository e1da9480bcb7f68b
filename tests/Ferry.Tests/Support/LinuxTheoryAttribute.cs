namespace Ferry.Tests.Support;

/// <summary>The theory form of <see cref="LinuxFactAttribute"/>: skipped with the reason when the host lacks what it needs.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class LinuxTheoryAttribute : TheoryAttribute
{
    public LinuxTheoryAttribute(HostNeeds needs = HostNeeds.None)
    {
        Needs = needs;
        Skip = HostRequirements.WhyNot(needs);
    }

    public HostNeeds Needs { get; }
}
