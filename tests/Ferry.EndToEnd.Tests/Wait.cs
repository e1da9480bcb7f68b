using System.Diagnostics;

namespace Ferry.EndToEnd.Tests;

/// <summary>Bounded polling with a message that names what was awaited and what was last seen.</summary>
internal static class Wait
{
    public static async Task<T> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        T last = await probe();
        while (!done(last))
        {
            if (sw.Elapsed > timeout)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds:0} s waiting for {what}; last seen: {System.Text.Json.JsonSerializer.Serialize(last)}");
            }
            await Task.Delay(100);
            last = await probe();
        }
        return last;
    }
}
