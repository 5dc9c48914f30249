namespace Weft.Cluster.Tests.Support;

/// <summary>
/// A copy of the shipped akka.hocon with a test's overrides appended (a later HOCON key wins), for
/// <c>Weft:AkkaConfigFile</c>. Deleted when disposed.
/// </summary>
public sealed class TestTuning : IDisposable
{
    private TestTuning(string path) => Path = path;

    public string Path { get; }

    public KeyValuePair<string, string?> Setting => new("Weft:AkkaConfigFile", Path);

    public static TestTuning With(params string[] overrides)
    {
        var shipped = File.ReadAllText(System.IO.Path.Combine(AppContext.BaseDirectory, "akka.hocon"));
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"weft-akka-{Guid.NewGuid():N}.hocon");
        File.WriteAllText(path, shipped + "\n# test overrides\n" + string.Join("\n", overrides) + "\n");
        return new TestTuning(path);
    }

    public void Dispose() => File.Delete(Path);
}
