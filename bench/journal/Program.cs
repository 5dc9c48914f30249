// Journal benchmark: sustained event persistence through the real TailnetActor path (sharding,
// the persistent shell, Akka.Persistence.Sql), on SQLite and PostgreSQL, with group commit on
// ("batched") and off ("single": one Persist round trip per command), all in one run.
//
// Usage: weft-bench-journal [--postgres <connection string>] [--seconds N]
// The last line is: journal: sqlite=<events/s> postgres=<events/s> batched/single=<ratio>

using System.Diagnostics;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Weft.Cluster;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;

var postgres = ArgValue("--postgres");
var seconds = int.Parse(ArgValue("--seconds") ?? "10");
const int Tailnets = 8;
const int InFlightPerTailnet = 64;

var results = new List<(string Store, string Mode, double EventsPerSecond)>();
foreach (var store in postgres is null ? ["sqlite"] : new[] { "sqlite", "postgres" })
{
    foreach (var mode in new[] { "single", "batched" })
    {
        var rate = await Measure(store, mode);
        results.Add((store, mode, rate));
        Console.WriteLine($"{store,-9} {mode,-8} {rate,10:F0} events/s");
    }
}

double Rate(string store, string mode) => results.FirstOrDefault(r => r.Store == store && r.Mode == mode).EventsPerSecond;
var sqliteRatio = Rate("sqlite", "batched") / Rate("sqlite", "single");
if (postgres is not null)
    Console.WriteLine($"postgres batched/single = {Rate("postgres", "batched") / Rate("postgres", "single"):F1}");
Console.WriteLine($"sqlite batched/single = {sqliteRatio:F1}   ({Tailnets} tailnets x {InFlightPerTailnet} commands in flight, {seconds} s per run)");
Console.WriteLine($"journal: sqlite={Rate("sqlite", "batched"):F0} postgres={(postgres is null ? "n/a" : Rate("postgres", "batched").ToString("F0"))} batched/single={sqliteRatio:F1}");
return 0;

async Task<double> Measure(string store, string mode)
{
    var folder = Path.Combine(Path.GetTempPath(), "weft-bench-" + Guid.NewGuid().ToString("N"));
    string? database = null;
    var settings = new Dictionary<string, string?>
    {
        ["Weft:Api:Listen"] = "http://127.0.0.1:0",
        ["Weft:Control:Listen"] = "http://127.0.0.1:0",
        ["Weft:Cluster:Port"] = "0",
        ["Serilog:MinimumLevel:Default"] = "Warning",
        ["Weft:Persistence:MaxCommandsPerWrite"] = mode == "single" ? "1" : "512",
    };
    if (store == "sqlite")
    {
        settings["Weft:Storage:Provider"] = "Sqlite";
        settings["Weft:Storage:DataDirectory"] = folder;
    }
    else
    {
        database = "weft_bench_" + Guid.NewGuid().ToString("N")[..10];
        await Execute(postgres!, $"CREATE DATABASE \"{database}\"");
        settings["Weft:Storage:Provider"] = "Postgres";
        settings["Weft:Storage:ConnectionString"] = new NpgsqlConnectionStringBuilder(postgres) { Database = database }.ToString();
        settings["Weft:Cluster:Secret"] = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
    }

    var app = CoordinatorHost.Build(settings);
    var quietConsole = Console.Out;
    Console.SetOut(TextWriter.Null); // the node's start-up banner is not part of the report
    await app.StartAsync();
    await app.Services.GetRequiredService<CoordinatorReadiness>().ApiAddress;
    Console.SetOut(quietConsole);
    try
    {
        var tailnets = app.Services.GetRequiredService<IRequiredActor<TailnetActor>>().ActorRef;
        var ids = Enumerable.Range(0, Tailnets).Select(_ => Identifiers.NewTailnetId()).ToArray();
        foreach (var id in ids)
            await tailnets.Ask<TailnetInfo>(new CreateTailnet(id, TailnetRules.DefaultSettings("bench"), DateTimeOffset.UtcNow), TimeSpan.FromSeconds(30));

        long acknowledged = 0;
        var measuring = false;
        using var stop = new CancellationTokenSource();
        var counter = 0L;
        var writers = ids.SelectMany(id => Enumerable.Range(0, InFlightPerTailnet).Select(async _ =>
        {
            while (!stop.IsCancellationRequested)
            {
                // A new suffix every time, so every command is exactly one event.
                var change = new ChangeTailnetSettings(id, DnsSuffix: $"v{Interlocked.Increment(ref counter)}.bench.example");
                var reply = await tailnets.Ask<object>(change, TimeSpan.FromSeconds(60));
                if (reply is not TailnetInfo) throw new InvalidOperationException($"unexpected reply {reply}");
                if (Volatile.Read(ref measuring)) Interlocked.Increment(ref acknowledged);
            }
        })).ToArray();

        await Task.Delay(TimeSpan.FromSeconds(2)); // warm up: JIT, connection pools, SQLite WAL
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref measuring, true);
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        Volatile.Write(ref measuring, false);
        var elapsed = clock.Elapsed.TotalSeconds;
        var events = Interlocked.Read(ref acknowledged);
        stop.Cancel();
        await Task.WhenAll(writers);
        return events / elapsed;
    }
    finally
    {
        await app.StopAsync();
        await app.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        NpgsqlConnection.ClearAllPools();
        if (Directory.Exists(folder)) Directory.Delete(folder, true);
        if (database is not null) await Execute(postgres!, $"DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
    }
}

static async Task Execute(string connectionString, string sql)
{
    await using var connection = new NpgsqlConnection(connectionString);
    await connection.OpenAsync();
    await using var command = new NpgsqlCommand(sql, connection);
    await command.ExecuteNonQueryAsync();
}

string? ArgValue(string name)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
}
