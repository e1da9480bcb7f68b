using System.Reflection;
using System.Runtime.InteropServices;
using System.Security;
using Ferry.Core.Policy;
using Ferry.Engine.Source;
using Ferry.Native;
using Ferry.Protocol.Framing;
using Ferry.Vm.Memory;

namespace Ferry.Tests.Architecture;

/// <summary>
/// The decision core rule (design.md §5, style.md §3): Ferry.Core never sees a socket, a file
/// descriptor, a pointer or a clock, so the simulator can run it unchanged; only Ferry.Native
/// calls into native code. Checked by reflection over the compiled assemblies, method bodies included.
/// </summary>
public sealed class ArchitectureTests
{
    private static readonly Assembly Core = typeof(PreCopyPolicy).Assembly;
    private static readonly Assembly Native = typeof(AnonymousMapping).Assembly;
    private static readonly Assembly Protocol = typeof(FrameWriter).Assembly;
    private static readonly Assembly Vm = typeof(GuestMemory).Assembly;
    private static readonly Assembly Engine = typeof(SourceMigration).Assembly;

    private const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static IEnumerable<Type> TypesOf(Assembly a) => a.GetTypes(); // nested and compiler-generated included

    private static IEnumerable<MethodBase> MethodsOf(Type t) =>
        t.GetMethods(All).Cast<MethodBase>().Concat(t.GetConstructors(All));

    /// <summary>Every type a signature mentions: element types of arrays, by-refs and pointers, and generic arguments.</summary>
    private static IEnumerable<Type> Expand(Type t)
    {
        yield return t;
        if (t.HasElementType)
        {
            foreach (Type e in Expand(t.GetElementType()!))
            {
                yield return e;
            }
        }
        if (t.IsGenericType && !t.IsGenericTypeDefinition)
        {
            foreach (Type g in t.GetGenericArguments().SelectMany(Expand))
            {
                yield return g;
            }
        }
    }

    /// <summary>Every (place, type) in the signatures of a type's own members.</summary>
    private static IEnumerable<(string Where, Type Type)> SignatureTypes(Type t)
    {
        if (t.BaseType is { } b)
        {
            yield return ($"{t} base type", b);
        }
        foreach (Type i in t.GetInterfaces())
        {
            yield return ($"{t} interface", i);
        }
        foreach (FieldInfo f in t.GetFields(All))
        {
            yield return ($"{t}.{f.Name} field", f.FieldType);
        }
        foreach (PropertyInfo p in t.GetProperties(All))
        {
            yield return ($"{t}.{p.Name} property", p.PropertyType);
        }
        foreach (EventInfo e in t.GetEvents(All))
        {
            yield return ($"{t}.{e.Name} event", e.EventHandlerType!);
        }
        foreach (MethodBase m in MethodsOf(t))
        {
            if (m is MethodInfo mi)
            {
                yield return ($"{t}.{m.Name} return", mi.ReturnType);
            }
            foreach (ParameterInfo p in m.GetParameters())
            {
                yield return ($"{t}.{m.Name}({p.Name}) parameter", p.ParameterType);
            }
        }
    }

    private static bool IsForbiddenForCore(Type t) =>
        t.IsPointer || t.IsFunctionPointer || t.IsUnmanagedFunctionPointer
        || t == typeof(IntPtr) || t == typeof(UIntPtr)
        || typeof(SafeHandle).IsAssignableFrom(t)
        || typeof(Stream).IsAssignableFrom(t)
        || typeof(FileSystemInfo).IsAssignableFrom(t)
        || t == typeof(File) || t == typeof(Directory)
        || t == typeof(System.Diagnostics.Process)
        || (t.Namespace?.StartsWith("System.Net", StringComparison.Ordinal) ?? false)
        || t.Namespace == "System.IO" && t != typeof(IOException)
        || t == typeof(Marshal) || t == typeof(NativeMemory) || t == typeof(GCHandle);

    private static string Describe(MemberInfo m) => m is Type t ? t.FullName ?? t.Name : $"{m.DeclaringType?.FullName}.{m.Name}";

    private static void AssertNone(IEnumerable<string> violations, string rule)
    {
        var list = violations.Distinct().ToList();
        Assert.True(list.Count == 0, $"{rule}:\n  " + string.Join("\n  ", list.Take(30)));
    }

    [Fact]
    public void Core_references_no_network_native_or_ferry_assembly()
    {
        string[] refs = Core.GetReferencedAssemblies().Select(r => r.Name!).ToArray();
        AssertNone(refs.Where(r =>
                r.StartsWith("System.Net", StringComparison.Ordinal)
                || r.StartsWith("Ferry.", StringComparison.Ordinal)
                || r.StartsWith("System.IO", StringComparison.Ordinal)
                || r is "System.Diagnostics.Process" or "System.Runtime.InteropServices" or "Microsoft.Win32.Primitives"),
            $"Ferry.Core references forbidden assemblies (all: {string.Join(", ", refs)})");
    }

    [Fact]
    public void Project_references_follow_the_layering()
    {
        var allowed = new Dictionary<Assembly, string[]>
        {
            [Core] = [],
            [Native] = [],
            [Protocol] = [],
            [Vm] = ["Ferry.Core", "Ferry.Native"],
            [Engine] = ["Ferry.Core", "Ferry.Protocol", "Ferry.Vm"],
        };
        foreach (var (assembly, mayUse) in allowed)
        {
            string name = assembly.GetName().Name!;
            string[] ours = assembly.GetReferencedAssemblies().Select(r => r.Name!).Where(n => n.StartsWith("Ferry.", StringComparison.Ordinal)).ToArray();
            AssertNone(ours.Except(mayUse).Select(r => $"{name} → {r}"), "forbidden project reference");
        }
        // Protocol and Engine work on any Stream; neither knows about sockets.
        foreach (Assembly a in new[] { Core, Protocol, Engine })
        {
            AssertNone(a.GetReferencedAssemblies().Select(r => r.Name!).Where(n => n.StartsWith("System.Net", StringComparison.Ordinal))
                .Select(n => $"{a.GetName().Name} → {n}"), "socket-free assembly references networking");
        }
    }

    [Fact]
    public void Core_has_no_pointer_typed_field_parameter_or_return()
    {
        AssertNone(
            from t in TypesOf(Core)
            from s in SignatureTypes(t)
            from x in Expand(s.Type)
            where x.IsPointer || x.IsFunctionPointer || x.IsUnmanagedFunctionPointer
            select $"{s.Where}: {s.Type}",
            "pointer types in Ferry.Core");
    }

    [Fact]
    public void Core_members_use_no_handles_native_ints_sockets_streams_files_or_processes()
    {
        AssertNone(
            from t in TypesOf(Core)
            from s in SignatureTypes(t)
            from x in Expand(s.Type)
            where IsForbiddenForCore(x)
            select $"{s.Where}: {s.Type}",
            "forbidden types in Ferry.Core signatures");
    }

    [Fact]
    public void Core_code_calls_nothing_that_does_io_or_native_interop()
    {
        // Signatures are not enough: a method could open a file or a socket inside its body.
        var violations = new List<string>();
        int references = 0;
        foreach (Type t in TypesOf(Core))
        {
            foreach (MethodBase m in MethodsOf(t))
            {
                foreach (var r in IlReferences.Of(m))
                {
                    references++;
                    if (r.Member is null)
                    {
                        violations.Add($"{t}.{m.Name}: {r.OpCode.Name} ({r.Unresolved})");
                        continue;
                    }
                    Type? owner = r.Member as Type ?? r.Member.DeclaringType;
                    IEnumerable<Type> mentioned = owner is null ? [] : Expand(owner);
                    if (r.Member is MethodInfo mi)
                    {
                        mentioned = mentioned.Concat(Expand(mi.ReturnType)).Concat(mi.GetParameters().SelectMany(p => Expand(p.ParameterType)));
                    }
                    else if (r.Member is FieldInfo fi)
                    {
                        mentioned = mentioned.Concat(Expand(fi.FieldType));
                    }
                    if (mentioned.FirstOrDefault(IsForbiddenForCore) is { } bad)
                    {
                        violations.Add($"{t}.{m.Name}: {r.OpCode.Name} {Describe(r.Member)} (uses {bad})");
                    }
                }
            }
        }
        Assert.True(references > 100, $"only {references} IL references found: the scanner is not reading Ferry.Core");
        AssertNone(violations, "Ferry.Core code touches I/O, handles or native interop");
    }

    [Fact]
    public void Core_reads_no_clock()
    {
        // One decision core, two clocks (design.md §5): time comes in through observations only.
        var clocks = new (Type Type, string? Member)[]
        {
            (typeof(System.Diagnostics.Stopwatch), null),
            (typeof(TimeProvider), null),
            (typeof(DateTime), "get_Now"), (typeof(DateTime), "get_UtcNow"), (typeof(DateTime), "get_Today"),
            (typeof(DateTimeOffset), "get_Now"), (typeof(DateTimeOffset), "get_UtcNow"),
            (typeof(Environment), "get_TickCount"), (typeof(Environment), "get_TickCount64"),
            (typeof(Thread), "Sleep"), (typeof(Task), "Delay"),
        };
        AssertNone(
            from t in TypesOf(Core)
            from m in MethodsOf(t)
            from r in IlReferences.Of(m)
            let member = r.Member
            where member is not null
            let owner = member as Type ?? member.DeclaringType
            where clocks.Any(c => c.Type == owner && (c.Member is null || c.Member == member.Name))
            select $"{t}.{m.Name}: {Describe(member)}",
            "Ferry.Core reads a clock");
    }

    /// <summary>Every IL reference a type's own method bodies make, with the types it mentions.</summary>
    private static IEnumerable<(string Where, MemberInfo Member, IEnumerable<Type> Mentioned)> BodyReferences(Type t) =>
        from m in MethodsOf(t)
        from r in IlReferences.Of(m)
        let member = r.Member
        where member is not null
        let owner = member as Type ?? member.DeclaringType
        let mentioned = (owner is null ? [] : Expand(owner))
            .Concat(member is MethodInfo mi ? Expand(mi.ReturnType).Concat(mi.GetParameters().SelectMany(p => Expand(p.ParameterType))) : [])
            .Concat(member is FieldInfo fi ? Expand(fi.FieldType) : [])
        select ($"{t}.{m.Name}", member, mentioned);

    private static bool IsConcurrencyOrAsync(Type t) =>
        t == typeof(Thread) || t == typeof(ThreadPool) || t == typeof(Monitor) || t == typeof(Interlocked) || t == typeof(Volatile)
        || t == typeof(Task) || (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Task<>))
        || t == typeof(ValueTask) || (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(ValueTask<>))
        || t == typeof(CancellationToken) || t == typeof(CancellationTokenSource) || typeof(WaitHandle).IsAssignableFrom(t)
        || t == typeof(SemaphoreSlim) || t == typeof(System.Threading.Timer) || t == typeof(Lock)
        || t == typeof(TimeProvider);

    [Fact]
    public void The_migration_machines_use_no_thread_task_lock_timer_or_clock()
    {
        // design.md §5: events in with their time, commands out. A machine that blocked, locked or
        // read a clock could not be stepped by the simulator's virtual clock.
        Type[] machines = TypesOf(Core).Where(t => t.Namespace?.StartsWith("Ferry.Core.Machines", StringComparison.Ordinal) == true).ToArray();
        Assert.True(machines.Length >= 10, $"only {machines.Length} machine types found");
        Assert.Contains(machines, t => t == typeof(Ferry.Core.Machines.Source.SourceMigrationMachine));
        Assert.Contains(machines, t => t == typeof(Ferry.Core.Machines.Destination.DestinationMigrationMachine));
        AssertNone(
            from t in machines
            from s in SignatureTypes(t)
            from x in Expand(s.Type)
            where IsConcurrencyOrAsync(x) || IsForbiddenForCore(x)
            select $"{s.Where}: {s.Type}",
            "machine signatures mention threads, tasks or I/O");
        AssertNone(
            from t in machines
            from r in BodyReferences(t)
            where r.Mentioned.Any(x => IsConcurrencyOrAsync(x) || IsForbiddenForCore(x))
            select $"{r.Where}: {Describe(r.Member)}",
            "machine code uses threads, tasks, locks or I/O");
        // Control: the same scan sees these where they are.
        Assert.Contains(BodyReferences(typeof(Ferry.Engine.Source.SourceInbox)), r => r.Mentioned.Any(IsConcurrencyOrAsync));
    }

    [Fact]
    public void The_engine_makes_no_decision_the_machines_do_not_make()
    {
        // Policies, pacing, backoff and phase moves are the machines' (Ferry.Core.Machines): the engine never calls them itself.
        Type[] decisions =
        [
            typeof(IMigrationPolicy), typeof(PreCopyPolicy), typeof(Ferry.Core.Policy.HybridPolicy), typeof(Ferry.Core.Policy.AutoPolicy),
            typeof(Ferry.Core.Pacing.TokenBucket), typeof(Ferry.Core.Pacing.PostCopyAutoPacing), typeof(Ferry.Core.Migration.ReconnectBackoff),
            typeof(Ferry.Core.Migration.MigrationPhases),
        ];
        Assert.True(decisions.All(d => d.Assembly == Core));
        AssertNone(
            from t in TypesOf(Engine)
            from r in BodyReferences(t)
            let used = r.Mentioned.FirstOrDefault(x => decisions.Contains(x) && !(x == typeof(Ferry.Core.Migration.MigrationPhases) && r.Member.Name == "ToWire"))
            where used is not null
            select $"{r.Where}: {Describe(r.Member)} ({used.Name})",
            "Ferry.Engine decides something itself");
        // Control: the scan sees policy calls where they are (the source machine).
        Assert.Contains(BodyReferences(typeof(Ferry.Core.Machines.Source.SourceMigrationMachine)), r => r.Mentioned.Contains(typeof(IMigrationPolicy)));
    }

    [Fact]
    public void The_engine_reads_time_only_through_its_time_provider()
    {
        var clocks = new (Type Type, string? Member)[]
        {
            (typeof(System.Diagnostics.Stopwatch), null),
            (typeof(DateTime), "get_Now"), (typeof(DateTime), "get_UtcNow"),
            (typeof(DateTimeOffset), "get_Now"), (typeof(DateTimeOffset), "get_UtcNow"),
            (typeof(Environment), "get_TickCount"), (typeof(Environment), "get_TickCount64"),
        };
        AssertNone(
            from t in TypesOf(Engine)
            from r in BodyReferences(t)
            let owner = r.Member as Type ?? r.Member.DeclaringType
            where clocks.Any(c => c.Type == owner && (c.Member is null || c.Member == r.Member.Name))
            select $"{r.Where}: {Describe(r.Member)}",
            "Ferry.Engine reads a clock directly (inject TimeProvider)");
    }

    private static IEnumerable<string> PInvokes(Assembly a) =>
        from t in TypesOf(a)
        from m in t.GetMethods(All)
        where (m.Attributes & MethodAttributes.PinvokeImpl) != 0
            || m.GetCustomAttributes(inherit: false).Any(x => x is DllImportAttribute or LibraryImportAttribute)
        select $"{t.FullName}.{m.Name}";

    [Fact]
    public void Core_has_no_pinvoke_and_no_unsafe_code()
    {
        AssertNone(PInvokes(Core), "P/Invoke in Ferry.Core");
        Assert.Empty(Core.ManifestModule.GetCustomAttributes(typeof(UnverifiableCodeAttribute), inherit: false));
        // The check above can see unsafe code: the assemblies built with AllowUnsafeBlocks carry the marker.
        Assert.NotEmpty(Native.ManifestModule.GetCustomAttributes(typeof(UnverifiableCodeAttribute), inherit: false));
        Assert.NotEmpty(Vm.ManifestModule.GetCustomAttributes(typeof(UnverifiableCodeAttribute), inherit: false));
    }

    [Fact]
    public void Only_Ferry_Native_contains_pinvoke()
    {
        // Make sure every Ferry assembly is loaded, then look at all of them.
        Assembly[] anchors = [Core, Native, Protocol, Vm, Engine];
        var ferry = AppDomain.CurrentDomain.GetAssemblies()
            .Concat(anchors)
            .Where(a => a.GetName().Name is { } n && n.StartsWith("Ferry.", StringComparison.Ordinal) && n != "Ferry.Tests")
            .Distinct()
            .ToList();
        Assert.True(ferry.Count >= anchors.Length);
        foreach (Assembly a in ferry)
        {
            var found = PInvokes(a).ToList();
            if (a == Native)
            {
                Assert.Contains(found, m => m.Contains("mmap", StringComparison.Ordinal)); // the check sees them where they are
            }
            else
            {
                AssertNone(found, $"P/Invoke outside Ferry.Native, in {a.GetName().Name}");
            }
        }
    }

    [Fact]
    public void The_scans_would_catch_a_violation()
    {
        // Control: the same predicates flag these very types and members where they do occur.
        Assert.True(IsForbiddenForCore(typeof(System.Net.Sockets.Socket)));
        Assert.True(IsForbiddenForCore(typeof(FileStream)));
        Assert.True(IsForbiddenForCore(typeof(nint)));
        Assert.True(IsForbiddenForCore(typeof(byte*)));
        Assert.True(IsForbiddenForCore(typeof(Microsoft.Win32.SafeHandles.SafeFileHandle)));
        Assert.True(IsForbiddenForCore(typeof(FileInfo)));
        Assert.False(IsForbiddenForCore(typeof(ReadOnlySpan<byte>)));
        Assert.Contains(
            from t in TypesOf(Native) from s in SignatureTypes(t) from x in Expand(s.Type) where x.IsPointer select x,
            x => x == typeof(byte*));
        Assert.Contains(
            from t in TypesOf(Protocol) from m in MethodsOf(t) from r in IlReferences.Of(m) select r.Member,
            m => m is MethodInfo { Name: "Read" } mi && mi.DeclaringType == typeof(Stream));
    }
}
