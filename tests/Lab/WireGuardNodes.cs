using System.Globalization;
using System.Text;
using Weft.Contracts.Keys;

namespace Weft.Lab;

/// <summary>A WireGuard identity in the base64 form wg and wg-quick files use.</summary>
public sealed record WgIdentity(string PrivateKey, string PublicKey)
{
    public static WgIdentity Generate()
    {
        using var key = Curve25519PrivateKey.Generate();
        return new WgIdentity(key.ToBase64(), key.PublicKey.ToBase64());
    }
}

public sealed record WgPeer(string PublicKey, string AllowedIps, string? Endpoint = null, string? PresharedKey = null, int? PersistentKeepalive = null);

/// <summary>Which WireGuard runs on a lab machine.</summary>
public enum WgImplementation
{
    WireGuardGo,
    Weft,
}

/// <summary>A running WireGuard interface in a namespace, inspected and changed with the real <c>wg</c> tool.</summary>
public sealed class WgInterface
{
    internal WgInterface(Namespace ns, string name, WgIdentity identity, int port, string tunnelAddress, LabProcess process, WgImplementation implementation)
    {
        Namespace = ns;
        Name = name;
        Identity = identity;
        Port = port;
        TunnelAddress = tunnelAddress;
        Process = process;
        Implementation = implementation;
    }

    public Namespace Namespace { get; }
    public string Name { get; }
    public WgIdentity Identity { get; }
    public int Port { get; }
    /// <summary>The interface's own tunnel address, without prefix length.</summary>
    public string TunnelAddress { get; }
    public LabProcess Process { get; }
    public WgImplementation Implementation { get; }

    public string Show() => Namespace.Run("wg", "show", Name);

    public void Set(params string[] arguments) => Namespace.Run(["wg", "set", Name, .. arguments]);

    /// <summary>The peer's latest handshake as <c>wg show latest-handshakes</c> reports it (null: never).</summary>
    public DateTimeOffset? LatestHandshake(string peerPublicKey)
    {
        foreach (var line in Namespace.Run("wg", "show", Name, "latest-handshakes").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split('\t');
            if (parts.Length == 2 && parts[0] == peerPublicKey && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
                return seconds == 0 ? null : DateTimeOffset.FromUnixTimeSeconds(seconds);
        }
        return null;
    }

    public string Endpoint(string peerPublicKey) =>
        Namespace.Run("wg", "show", Name, "endpoints").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('\t')).Where(p => p.Length == 2 && p[0] == peerPublicKey).Select(p => p[1]).FirstOrDefault() ?? "";

    /// <summary>Starts WireGuard on <paramref name="ns"/>: an interface with <paramref name="tunnelCidr"/> and routes to its peers' allowed IPs.</summary>
    public static WgInterface Start(WgImplementation implementation, Namespace ns, string name, WgIdentity identity, int port, string tunnelCidr,
        IReadOnlyList<WgPeer> peers, params string[] extraAgentArguments) =>
        implementation == WgImplementation.WireGuardGo
            ? StartWireGuardGo(ns, name, identity, port, tunnelCidr, peers)
            : StartWeft(ns, name, identity, port, tunnelCidr, peers, extraAgentArguments);

    private static WgInterface StartWireGuardGo(Namespace ns, string name, WgIdentity identity, int port, string tunnelCidr, IReadOnlyList<WgPeer> peers)
    {
        LabPrerequisites.RequireTools("wireguard-go", "wg");
        var socket = $"/var/run/wireguard/{name}.sock";
        ns.Lab.RemoveOnDispose(socket);
        var process = ns.Start("wireguard-go", "wireguard-go", "-f", name);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!File.Exists(socket))
        {
            if (process.HasExited || DateTime.UtcNow > deadline) throw new LabException($"wireguard-go did not create {socket}:\n{process.Output}");
            Thread.Sleep(50);
        }
        var config = ns.Lab.WriteFile(name + ".conf", ConfigText(identity, port, null, peers));
        ns.Run("wg", "setconf", name, config);
        ns.Run("ip", "address", "add", tunnelCidr, "dev", name);
        ns.Run("ip", "link", "set", name, "up");
        foreach (var prefix in peers.SelectMany(p => p.AllowedIps.Split(',', StringSplitOptions.TrimEntries)))
            ns.Run("ip", "route", "replace", prefix, "dev", name);
        return new WgInterface(ns, name, identity, port, tunnelCidr.Split('/')[0], process, WgImplementation.WireGuardGo);
    }

    private static WgInterface StartWeft(Namespace ns, string name, WgIdentity identity, int port, string tunnelCidr, IReadOnlyList<WgPeer> peers, string[] extra)
    {
        var agent = Path.Combine(AppContext.BaseDirectory, "weft-agent.dll");
        if (!File.Exists(agent)) throw new LabException($"weft-agent.dll not found next to the tests ({agent})");
        ns.Lab.RemoveOnDispose($"/var/run/wireguard/{name}.sock");
        var config = ns.Lab.WriteFile(name + ".conf", ConfigText(identity, port, tunnelCidr, peers));
        var process = ns.Start("weft-agent", ["dotnet", agent, "wg", "up", name, "--config", config, .. extra]);
        process.WaitForOutput($"{name} is up", TimeSpan.FromSeconds(30));
        return new WgInterface(ns, name, identity, port, tunnelCidr.Split('/')[0], process, WgImplementation.Weft);
    }

    private static string ConfigText(WgIdentity identity, int port, string? address, IEnumerable<WgPeer> peers)
    {
        var text = new StringBuilder()
            .AppendLine("[Interface]")
            .AppendLine($"PrivateKey = {identity.PrivateKey}")
            .AppendLine($"ListenPort = {port}");
        if (address is not null) text.AppendLine($"Address = {address}");
        foreach (var peer in peers)
        {
            text.AppendLine().AppendLine("[Peer]")
                .AppendLine($"PublicKey = {peer.PublicKey}")
                .AppendLine($"AllowedIPs = {peer.AllowedIps}");
            if (peer.Endpoint is not null) text.AppendLine($"Endpoint = {peer.Endpoint}");
            if (peer.PresharedKey is not null) text.AppendLine($"PresharedKey = {peer.PresharedKey}");
            if (peer.PersistentKeepalive is not null) text.AppendLine($"PersistentKeepalive = {peer.PersistentKeepalive}");
        }
        return text.ToString();
    }
}
