using SharpFuzz;

namespace Weft.Fuzz.Engine;

/// <summary>
/// <c>weft-fuzz instrument</c>: rewrites the Weft assemblies next to weft-fuzz (copies made by the
/// build, never the ones the product or the other tests run) with SharpFuzz's branch
/// instrumentation. Runs in a process of its own, before any of them is loaded; an assembly that is
/// already instrumented is left as it is.
/// </summary>
public static class Instrumentation
{
    public static readonly string[] Assemblies = ["Weft.Contracts.dll", "weft.dll", "weft-agent.dll"];

    public static int Run()
    {
        foreach (var name in Assemblies)
        {
            var path = Path.Combine(AppContext.BaseDirectory, name);
            try
            {
                var types = Fuzzer.Instrument(path, type => type.StartsWith("Weft.", StringComparison.Ordinal), Options.Value).Count();
                Console.WriteLine($"instrumented {name}: {types} types");
            }
            catch (InstrumentationException e) when (e.Message.Contains("already instrumented", StringComparison.Ordinal))
            {
                Console.WriteLine($"{name} is already instrumented");
            }
        }
        return 0;
    }
}
