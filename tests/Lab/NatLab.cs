using System.Text.Json;

namespace Weft.Lab;

/// <summary>How a lab router translates (the NAT kinds of the design's test lab).</summary>
public enum NatKind
{
    /// <summary><c>masquerade</c>: the source port is kept, so one mapping serves every destination (endpoint-independent).</summary>
    Easy,
    /// <summary><c>masquerade random</c>: a new random port for every destination (symmetric, endpoint-dependent).</summary>
    Hard,
    /// <summary>Masquerade, and every forwarded UDP datagram dropped: only TCP (to the relay) gets out.</summary>
    UdpBlocked,
}

/// <summary>
/// A NAT router: a namespace with its WAN side on the lab's public segment and a LAN of its own
/// (198.19.&lt;lan&gt;.0/24), translating with nftables as its <see cref="NatKind"/> says. The
/// public side has no route into any LAN: only what the router translates gets through.
/// </summary>
public sealed class NatRouter
{
    private int _hosts;

    private NatRouter(Namespace router, string wanAddress, int lan, NatKind kind)
    {
        Router = router;
        WanAddress = wanAddress;
        Lan = lan;
        Kind = kind;
    }

    public Namespace Router { get; }

    public string WanAddress { get; }

    public int Lan { get; }

    public NatKind Kind { get; }

    public string Gateway => $"198.19.{Lan}.1";

    public static NatRouter Create(Lab lab, Segment publicSegment, string name, string wanAddress, int lan, NatKind kind)
    {
        var ns = lab.AddNamespace(name);
        var wan = publicSegment.Attach(ns, wanAddress + "/24");
        ns.Run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward");
        var masquerade = kind == NatKind.Hard ? "masquerade random" : "masquerade";
        // The firewall every home router has: nothing new comes in from the WAN. Dropped there, an
        // unsolicited packet leaves no conntrack entry behind (entries are confirmed only for packets
        // that pass), so it cannot take the port a later outbound mapping needs.
        var rules = $$"""
            table ip weftlab {
              chain postrouting { type nat hook postrouting priority 100; oifname "{{wan}}" {{masquerade}}; }
              chain input { type filter hook input priority 0; policy accept; iifname "{{wan}}" ct state new drop; }
              chain forward {
                type filter hook forward priority 0; policy accept;
                iifname "{{wan}}" ct state new drop;
                {{(kind == NatKind.UdpBlocked ? "meta l4proto udp drop" : "")}}
              }
            }
            """;
        var file = lab.WriteFile($"nat-{name}.nft", rules);
        ns.Run("nft", "-f", file);
        return new NatRouter(ns, wanAddress, lan, kind);
    }

    /// <summary>
    /// Puts <paramref name="host"/> on this router's LAN, its default route through the router; returns
    /// the host's interface and address. With <paramref name="mtu"/>, the LAN link is that small: the
    /// router answers bigger packets from the WAN with ICMP "fragmentation needed".
    /// </summary>
    public (string Interface, string Address) Attach(Namespace host, bool makeDefault = true, int? mtu = null)
    {
        var index = Interlocked.Increment(ref _hosts) + 1;
        var address = $"198.19.{Lan}.{index}";
        // Each host has a link of its own: the router holds the gateway address on every one as a /32
        // and routes each host's address to its link (one /24 on several links would send every
        // answer down the first).
        var (routerEnd, hostEnd) = Router.Lab.Connect(Router, Gateway + "/32", host, address + "/24", mtu);
        Router.Run("ip", "route", "add", address + "/32", "dev", routerEnd);
        if (makeDefault) host.Run("ip", "route", "replace", "default", "via", Gateway, "dev", hostEnd);
        return (hostEnd, address);
    }
}

/// <summary>A <c>weft-relay</c> process in a lab machine.</summary>
public static class WeftRelay
{
    /// <param name="accessCheckUrl">A coordinator's API, asked about each login and live connection (<c>--access-check-url</c>); null: none.</param>
    public static LabProcess Start(Namespace machine, string name, string ticketIssuer, string meshKey, Uri? accessCheckUrl, params string[] meshPeers)
    {
        var command = new List<string>
        {
            "dotnet", Binaries.Relay, "--listen", "0.0.0.0:3340", "--stun", "0.0.0.0:3478",
            "--key-file", Path.Combine(machine.Lab.Directory, name + ".key"), "--ticket-issuer", ticketIssuer, "--mesh-key", meshKey,
        };
        if (accessCheckUrl is not null) command.AddRange(["--access-check-url", accessCheckUrl.ToString()]);
        foreach (var peer in meshPeers) command.AddRange(["--mesh-peer", peer]);
        var process = machine.Start("weft-relay " + name, [.. command]);
        process.WaitForOutput("weft-relay is up", TimeSpan.FromSeconds(60));
        return process;
    }
}

/// <summary>Asks a lab agent's local API directly (no CLI process): quick enough to poll every few milliseconds.</summary>
public static class AgentApi
{
    public static async Task<JsonElement> Query(WeftAgent agent, string command, object? body = null)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var (_, answer) = await NodeAgent.Agent.LocalApi.QueryAsync(agent.StateDirectory, command, body, timeout.Token);
        using (answer) return answer.RootElement.Clone();
    }

    /// <summary>The path to the peer called <paramref name="peerName"/>: "direct", "relay" or "none" (null when it is not a peer yet).</summary>
    public static async Task<string?> PathTo(WeftAgent agent, string peerName) => (await PathAndEndpoint(agent, peerName))?.Path;

    /// <summary>The path to a peer and the endpoint in use (null when it is not a peer yet).</summary>
    public static async Task<(string Path, string? Endpoint)?> PathAndEndpoint(WeftAgent agent, string peerName) =>
        (await Tunnel(agent, peerName)) switch
        {
            null => null,
            { ValueKind: not JsonValueKind.Object } => ("none", null),
            { } tunnel => (tunnel.GetProperty("path").GetString()!, tunnel.TryGetProperty("endpoint", out var endpoint) ? endpoint.GetString() : null),
        };

    /// <summary>The path MTU to a peer (null when it has no tunnel yet).</summary>
    public static async Task<int?> PathMtu(WeftAgent agent, string peerName) =>
        await Tunnel(agent, peerName) is { ValueKind: JsonValueKind.Object } tunnel && tunnel.TryGetProperty("mtu", out var mtu) ? mtu.GetInt32() : null;

    /// <summary>The status's tunnel of a peer (an undefined element when it has none), or null when it is not a peer yet.</summary>
    private static async Task<JsonElement?> Tunnel(WeftAgent agent, string peerName)
    {
        var status = await Query(agent, "status");
        if (!status.TryGetProperty("peers", out var peers)) return null;
        foreach (var peer in peers.EnumerateArray())
        {
            if (peer.GetProperty("name").GetString() != peerName) continue;
            return peer.TryGetProperty("tunnel", out var tunnel) && tunnel.ValueKind == JsonValueKind.Object ? tunnel : default(JsonElement);
        }
        return null;
    }
}
