using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;
using Weft.Contracts.Control;
using Weft.NodeAgent.Control;

namespace Weft.NodeAgent.Agent;

/// <summary>
/// What the person running the agent chose with <c>up</c>, <c>login</c>, <c>set</c> and <c>down</c>, as
/// Tailscale's prefs: the daemon keeps them in <c>prefs.json</c> in its state directory, so that a
/// restarted daemon (a reboot, <c>systemctl restart</c>) comes back as it was left. Auth keys are not
/// prefs: they are used once and never written down.
/// </summary>
public sealed record AgentPrefs
{
    /// <summary>Coordinator control URLs; empty until the first <c>up --login-server</c>.</summary>
    public ImmutableArray<string> LoginServers { get; init; } = [];
    public string Hostname { get; init; } = Environment.MachineName;
    /// <summary>The tailnet to wait in for approval when there is no auth key.</summary>
    public string? Tailnet { get; init; }
    public ImmutableArray<string> AdvertisedRoutes { get; init; } = [];
    public bool AcceptRoutes { get; init; }
    public string? ExitNode { get; init; }
    /// <summary>MagicDNS becomes the system's resolver while up (Tailscale's <c>--accept-dns</c>, on by default).</summary>
    public bool AcceptDns { get; init; } = true;
    /// <summary>False after <c>down</c>: the daemon starts without a stream and without tunnels.</summary>
    public bool WantRunning { get; init; }

    /// <summary>Prefs of a later version (an agent downgraded): read past, and written back as they were.</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? LaterPrefs { get; init; }

    [JsonIgnore]
    public IReadOnlyList<Uri> Coordinators => [.. LoginServers.Select(s => new Uri(s))];

    /// <summary>The prefs with a change applied: what the change leaves out stays as it was.</summary>
    public AgentPrefs With(PrefsChange change) => this with
    {
        LoginServers = change.LoginServer is { } servers ? [.. PrefsChange.SplitList(servers)] : LoginServers,
        Hostname = change.Hostname ?? Hostname,
        Tailnet = change.Tailnet is { } tailnet ? (tailnet.Length == 0 ? null : tailnet) : Tailnet,
        AdvertisedRoutes = change.AdvertiseRoutes is { } routes
            ? [.. PrefsChange.SplitList(routes).Select(r => IpLiteral.TryParsePrefix(r, out var prefix) ? prefix.ToString() : r), .. ExitRoutesIf(change.AdvertiseExitNode ?? HasExitRoutes)]
            : change.AdvertiseExitNode is { } exit ? [.. SubnetRoutes, .. ExitRoutesIf(exit)] : AdvertisedRoutes,
        AcceptRoutes = change.AcceptRoutes ?? AcceptRoutes,
        ExitNode = change.ExitNode is { } exitNode ? (exitNode.Length == 0 ? null : exitNode) : ExitNode,
        AcceptDns = change.AcceptDns ?? AcceptDns,
    };

    private bool HasExitRoutes => AdvertisedRoutes.Any(ExitRoute.Is);

    /// <summary>The advertised routes without the exit routes (what <c>--advertise-routes</c> gave).</summary>
    public IEnumerable<string> SubnetRoutes => AdvertisedRoutes.IsDefault ? [] : AdvertisedRoutes.Where(r => !ExitRoute.Is(r));

    private static ImmutableArray<string> ExitRoutesIf(bool exit) => exit ? ExitRoute.Prefixes : [];
}

/// <summary>
/// A change to the prefs, as <c>up</c>, <c>login</c> and <c>set</c> send it over the local API: every
/// field is optional, and an absent one leaves the pref as it was (an empty string clears
/// <see cref="Tailnet"/> and <see cref="ExitNode"/>). <see cref="AuthKey"/> and <see cref="ForceReauth"/>
/// are used for this login only.
/// </summary>
public sealed record PrefsChange
{
    /// <summary>Coordinator control URL(s), comma-separated.</summary>
    public string? LoginServer { get; init; }
    public string? AuthKey { get; init; }
    public bool ForceReauth { get; init; }
    public string? Tailnet { get; init; }
    public string? Hostname { get; init; }
    /// <summary>Subnet routes, comma-separated CIDRs; an empty string withdraws them.</summary>
    public string? AdvertiseRoutes { get; init; }
    public bool? AdvertiseExitNode { get; init; }
    public bool? AcceptRoutes { get; init; }
    /// <summary>A peer's name, FQDN or tailnet address; an empty string stops using one.</summary>
    public string? ExitNode { get; init; }
    public bool? AcceptDns { get; init; }

    // Dead letters and logs print messages: never the auth key.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"LoginServer = {LoginServer}, AuthKey = {(AuthKey is null ? "null" : "(secret)")}, ForceReauth = {ForceReauth}, Tailnet = {Tailnet}, ");
        builder.Append($"Hostname = {Hostname}, AdvertiseRoutes = {AdvertiseRoutes}, AdvertiseExitNode = {AdvertiseExitNode}, AcceptRoutes = {AcceptRoutes}, ExitNode = {ExitNode}, AcceptDns = {AcceptDns}");
        return true;
    }

    internal static IEnumerable<string> SplitList(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Every problem with the change, in words a person can act on; empty when it is valid.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (LoginServer is { } servers)
        {
            var urls = SplitList(servers).ToList();
            if (urls.Count == 0) problems.Add("--login-server names no coordinator");
            foreach (var text in urls)
                if (!Uri.TryCreate(text, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https") || url.Host.Length == 0)
                    problems.Add($"--login-server '{Truncate(text)}' is not an http(s) URL");
        }
        if (AuthKey is { } key && (key.Length is 0 or > 512 || key.Any(char.IsWhiteSpace)))
            problems.Add("the auth key is empty, too long or has spaces in it");
        if (ForceReauth && AuthKey is null) problems.Add("--force-reauth needs an auth key");
        if (Hostname is { } name && (name.Length is 0 or > 63 || name.Any(c => char.IsControl(c) || char.IsWhiteSpace(c))))
            problems.Add($"--hostname '{Truncate(name)}' must be 1 to 63 characters without spaces");
        if (Tailnet is { Length: > 64 }) problems.Add("--tailnet is longer than a tailnet name can be (64)");
        if (AdvertiseRoutes is { } routes)
            foreach (var text in SplitList(routes))
                if (!IpLiteral.TryParsePrefix(text, out var prefix) || prefix.PrefixLength == 0)
                    problems.Add($"--advertise-routes '{Truncate(text)}' is not a subnet in CIDR form that names its network (e.g. 198.51.100.0/24; for 0.0.0.0/0 use --advertise-exit-node)");
        if (ExitNode is { Length: > 253 }) problems.Add("--exit-node is longer than a name can be");
        return problems;
    }

    private static string Truncate(string text) => text.Length <= 60 ? text : text[..60] + "…";
}

/// <summary><c>prefs.json</c> in the agent's state directory (mode 0600, replaced atomically).</summary>
public sealed class AgentPrefsFile(string directory)
{
    public const string FileName = "prefs.json";
    private const int MaxBytes = 64 * 1024;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string Path { get; } = System.IO.Path.Combine(directory, FileName);

    /// <summary>The saved prefs, or fresh ones (not logged in) when there are none.</summary>
    /// <exception cref="AgentStateException">The file is damaged: the daemon refuses to guess.</exception>
    public AgentPrefs Load()
    {
        if (!File.Exists(Path)) return new AgentPrefs();
        var prefs = PrivateFile.ReadJson<AgentPrefs>(Path, MaxBytes, Json, "a prefs file");
        var problems = new PrefsChange
        {
            LoginServer = prefs.LoginServers.IsDefaultOrEmpty ? null : string.Join(',', prefs.LoginServers),
            Hostname = prefs.Hostname,
            AdvertiseRoutes = string.Join(',', prefs.SubnetRoutes),
        }.Problems();
        if (problems.Count > 0) throw new AgentStateException($"{Path}: {string.Join("; ", problems)}");
        return prefs with { LoginServers = prefs.LoginServers.IsDefault ? [] : prefs.LoginServers, AdvertisedRoutes = prefs.AdvertisedRoutes.IsDefault ? [] : prefs.AdvertisedRoutes };
    }

    public void Save(AgentPrefs prefs)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        PrivateFile.Replace(Path, stream => JsonSerializer.Serialize(stream, prefs, Json));
    }
}
