using System.Diagnostics;

namespace Ferry.Tests.Support;

/// <summary>Bounded waits with messages that say what was being waited for.</summary>
internal static class Bounded
{
    /// <summary>Runs <paramref name="action"/> on its own thread; fails the test if it does not end in time.</summary>
    public static T Run<T>(Func<T> action, TimeSpan timeout, string what)
    {
        var task = Task.Factory.StartNew(action, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        if (!task.Wait(timeout) && !task.IsCompleted)
        {
            Assert.Fail($"{what} did not finish within {timeout.TotalSeconds:0} s (hang?)");
        }
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Runs <paramref name="action"/> on its own thread, rethrowing what it throws; fails the test if it does not end in time.</summary>
    public static void Do(Action action, TimeSpan timeout, string what) =>
        Run(() =>
        {
            action();
            return 0;
        }, timeout, what);

    /// <summary>Runs <paramref name="action"/> and returns what it threw (null if nothing), bounded in time.</summary>
    public static Exception? Catch(Action action, TimeSpan timeout, string what) =>
        Run<Exception?>(() =>
        {
            try
            {
                action();
                return null;
            }
            catch (Exception ex)
            {
                return ex;
            }
        }, timeout, what);

    /// <summary>Spins (with short sleeps) until <paramref name="condition"/> holds; fails with <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static void WaitUntil(Func<bool> condition, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds:0} s waiting until {what}");
            }
            Thread.Sleep(5);
        }
    }
}
