using System.Reflection;
using System.Reflection.Emit;

namespace Ferry.Tests.Architecture;

/// <summary>
/// Lists what a method body refers to (methods, fields, types) by walking its IL, so rules can be
/// checked on code, not only on signatures. Only token operands are resolved; everything else is skipped.
/// </summary>
internal static class IlReferences
{
    private static readonly OpCode[] OneByte = new OpCode[256];
    private static readonly OpCode[] TwoByte = new OpCode[256];

    static IlReferences()
    {
        foreach (FieldInfo f in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            var op = (OpCode)f.GetValue(null)!;
            ushort v = (ushort)op.Value;
            if (op.Size == 1)
            {
                OneByte[v] = op;
            }
            else
            {
                TwoByte[v & 0xff] = op;
            }
        }
    }

    /// <summary>One thing a method body refers to: the member (or type) and the opcode that referred to it.</summary>
    public readonly record struct Reference(OpCode OpCode, MemberInfo? Member, string? Unresolved);

    public static IEnumerable<Reference> Of(MethodBase method)
    {
        byte[]? il = method.GetMethodBody()?.GetILAsByteArray();
        if (il is null)
        {
            yield break;
        }
        Type[]? typeArgs = method.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null;
        Type[]? methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int pos = 0;
        while (pos < il.Length)
        {
            OpCode op = il[pos] == 0xFE ? TwoByte[il[pos + 1]] : OneByte[il[pos]];
            pos += op.Size;
            switch (op.OperandType)
            {
                case OperandType.InlineMethod:
                case OperandType.InlineField:
                case OperandType.InlineType:
                case OperandType.InlineTok:
                {
                    int token = BitConverter.ToInt32(il, pos);
                    MemberInfo? member = null;
                    string? error = null;
                    try
                    {
                        member = method.Module.ResolveMember(token, typeArgs, methodArgs);
                    }
                    catch (ArgumentException ex)
                    {
                        error = $"token 0x{token:x8}: {ex.Message}";
                    }
                    yield return new Reference(op, member, error);
                    pos += 4;
                    break;
                }
                case OperandType.InlineSig:
                    yield return new Reference(op, null, "calli through a function pointer");
                    pos += 4;
                    break;
                case OperandType.InlineSwitch:
                    int count = BitConverter.ToInt32(il, pos);
                    pos += 4 + 4 * count;
                    break;
                case OperandType.InlineNone:
                    break;
                case OperandType.ShortInlineBrTarget:
                case OperandType.ShortInlineI:
                case OperandType.ShortInlineVar:
                    pos += 1;
                    break;
                case OperandType.InlineVar:
                    pos += 2;
                    break;
                case OperandType.InlineI8:
                case OperandType.InlineR:
                    pos += 8;
                    break;
                default: // InlineBrTarget, InlineI, InlineString, ShortInlineR
                    pos += 4;
                    break;
            }
        }
    }
}
