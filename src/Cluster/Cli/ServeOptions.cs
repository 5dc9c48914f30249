using System.CommandLine;
using Weft.Cluster.Hosting;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Cli;

/// <summary>The flags of <c>weft</c> (serve). Each one overrides the matching <c>Weft:…</c> setting.</summary>
public sealed class ServeOptions
{
    private readonly Option<string?> _apiListen = new("--api-listen") { Description = "Admin API address (default http://127.0.0.1:8080)" };
    private readonly Option<string?> _controlListen = new("--control-listen") { Description = "Control protocol address for agents (default http://0.0.0.0:7650)" };
    private readonly Option<string?> _host = new("--akka-host") { Description = "Cluster address this node binds and advertises (default 127.0.0.1)" };
    private readonly Option<int?> _port = new("--akka-port") { Description = "Cluster port (default 4053; 0 = any free port)" };
    private readonly Option<string[]> _seeds = new("--seed") { Description = "Seed node host:port to join; repeat or comma-separate for several. None: form a one-node cluster", AllowMultipleArgumentsPerToken = true };
    private readonly Option<string?> _dataDir = new("--data-dir") { Description = "SQLite data folder (default ./data)" };
    private readonly Option<string?> _postgres = new("--postgres") { Description = "PostgreSQL connection string; selects PostgreSQL storage (needed for several nodes)" };
    private readonly Option<string?> _secretFile = new("--cluster-secret-file") { Description = "File (mode 0600) with the secret every node of the cluster shares; needed with --postgres. With SQLite: <data-dir>/cluster.secret, made on first start" };
    private readonly Option<string?> _relayListen = new("--relay-listen") { Description = "The embedded relay's TCP address (default 0.0.0.0:3340)" };
    private readonly Option<string?> _stunListen = new("--stun-listen") { Description = "The embedded STUN server's UDP address (default 0.0.0.0:3478; 'off' for none)" };
    private readonly Option<string?> _relayHost = new("--relay-public-host") { Description = "The host agents dial for the embedded relay (default: the host they dial for control)" };
    private readonly Option<bool> _noRelay = new("--no-embedded-relay") { Description = "Run no relay in this process (list separate weft-relay nodes in Weft:Relay:Regions)" };
    private readonly Option<LogFormat?> _logFormat = new("--log-format") { Description = "Console log format: Text or Json" };
    private readonly Option<Serilog.Events.LogEventLevel?> _logLevel = new("--log-level")
    {
        Description = "Least severe events logged: Verbose, Debug, Information (default), Warning, Error. Debug adds Akka's own start-up and membership events",
    };

    public ServeOptions(Command command)
    {
        foreach (var option in new Option[] { _apiListen, _controlListen, _host, _port, _seeds, _secretFile, _dataDir, _postgres, _relayListen, _stunListen, _relayHost, _noRelay, _logFormat, _logLevel }) command.Add(option);
    }

    /// <summary>The configuration overrides the given flags stand for; flags not given override nothing.</summary>
    public Dictionary<string, string?> ToSettings(ParseResult parse)
    {
        var settings = new Dictionary<string, string?>();
        void Set(string key, object? value)
        {
            if (value is not null) settings[$"{WeftSettings.Section}:{key}"] = value.ToString();
        }

        Set("Api:Listen", parse.GetValue(_apiListen));
        Set("Control:Listen", parse.GetValue(_controlListen));
        Set("Cluster:Hostname", parse.GetValue(_host));
        Set("Cluster:Port", parse.GetValue(_port));
        var seeds = (parse.GetValue(_seeds) ?? [])
            .SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .ToArray();
        for (var i = 0; i < seeds.Length; i++) Set($"Cluster:Seeds:{i}", seeds[i]);
        Set("Cluster:SecretFile", parse.GetValue(_secretFile));
        Set("Storage:DataDirectory", parse.GetValue(_dataDir));
        if (parse.GetValue(_postgres) is { } connection)
        {
            Set("Storage:Provider", StorageProvider.Postgres);
            Set("Storage:ConnectionString", connection);
        }
        Set("Relay:Listen", parse.GetValue(_relayListen));
        Set("Relay:Stun", parse.GetValue(_stunListen));
        Set("Relay:PublicHost", parse.GetValue(_relayHost));
        if (parse.GetValue(_noRelay)) Set("Relay:Embedded", false);
        Set("LogFormat", parse.GetValue(_logFormat));
        if (parse.GetValue(_logLevel) is { } level) settings["Serilog:MinimumLevel:Default"] = level.ToString();
        return settings;
    }
}
