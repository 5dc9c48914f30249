using System.Diagnostics;

namespace Weft.ClusterLab;

/// <summary>
/// A PostgreSQL server of the lab's own, on loopback and a unix socket in a temporary folder, that a
/// test may stop and start underneath a running cluster (the shared test server must never be).
/// Stopped and removed when disposed. As root it runs as the postgres user (PostgreSQL refuses root).
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    private readonly string _bin;
    private readonly string _folder;
    private readonly bool _asPostgresUser;

    private PostgresServer(string bin, string folder, int port, bool asPostgresUser)
    {
        _bin = bin;
        _folder = folder;
        Port = port;
        _asPostgresUser = asPostgresUser;
    }

    public int Port { get; }

    public string AdminConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Pooling=true;Timeout=5";

    /// <summary>The server binaries, or null when PostgreSQL is not installed.</summary>
    public static string? FindBinaries() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb")))
                .OrderByDescending(d => d, StringComparer.Ordinal).FirstOrDefault()
            : null;

    public static async Task<PostgresServer> StartAsync()
    {
        var bin = FindBinaries() ?? throw new InvalidOperationException("PostgreSQL server binaries not found under /usr/lib/postgresql");
        var folder = Directory.CreateTempSubdirectory("weft-lab-pg-").FullName;
        var root = Environment.UserName == "root";
        if (root) await Run("chown", "postgres:postgres", folder);
        var server = new PostgresServer(bin, folder, LoopbackPort.Free(), root);
        await server.As(Path.Combine(bin, "initdb"), "-D", server.Data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale");
        await server.Start();
        return server;
    }

    private string Data => Path.Combine(_folder, "data");

    /// <summary>Starts the (stopped) server again on the same port and data.</summary>
    public Task Start() => As(Path.Combine(_bin, "pg_ctl"), "-D", Data, "-l", Path.Combine(_folder, "server.log"), "-w", "-t", "60",
        "-o", $"-p {Port} -k {_folder} -c listen_addresses=127.0.0.1 -c max_connections=300", "start");

    /// <summary>Stops the server at once, as a crash or a power cut would (connections cut, no checkpoint).</summary>
    public Task Stop() => As(Path.Combine(_bin, "pg_ctl"), "-D", Data, "-m", "immediate", "-w", "stop");

    private Task As(string program, params string[] args) =>
        _asPostgresUser ? Run("runuser", ["-u", "postgres", "--", program, .. args]) : Run(program, args);

    private static async Task Run(string program, params string[] args)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args) info.ArgumentList.Add(arg);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {program}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited with {process.ExitCode}: {await output}{await error}");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (File.Exists(Path.Combine(Data, "postmaster.pid"))) await Stop();
        }
        catch (InvalidOperationException)
        {
            // Already stopped.
        }
        Directory.Delete(_folder, recursive: true);
    }
}
