using System.Net;

namespace Weft.Cluster.Relays;

/// <summary>
/// The relays agents use, bound from <c>Weft:Relay</c>. By default each coordinator runs an
/// embedded relay and STUN server, and with no <see cref="Regions"/> configured the relay map is
/// that one relay, reached at whatever host the agent dialled for control. A deployment with
/// separate <c>weft-relay</c> nodes lists them in <see cref="Regions"/>, and may turn the embedded one off.
/// </summary>
public sealed class RelaySettings
{
    /// <summary>Run a relay and a STUN server inside this coordinator process.</summary>
    public bool Embedded { get; set; } = true;

    /// <summary>The embedded relay's TCP address.</summary>
    public string Listen { get; set; } = "0.0.0.0:3340";

    /// <summary>The embedded STUN server's UDP address ("off" for none).</summary>
    public string Stun { get; set; } = "0.0.0.0:3478";

    /// <summary><see cref="Listen"/> as an address (checked by <see cref="Problems"/>).</summary>
    public IPEndPoint ListenEndpoint => IPEndPoint.Parse(Listen);

    /// <summary><see cref="Stun"/> as an address, or null when it is off.</summary>
    public IPEndPoint? StunEndpoint => Stun == "off" ? null : IPEndPoint.Parse(Stun);

    /// <summary>The host agents dial for the embedded relay; empty: the host they dial for control.</summary>
    public string PublicHost { get; set; } = "";

    /// <summary>The embedded relay's region (id and code), when <see cref="Regions"/> is empty.</summary>
    public int RegionId { get; set; } = 1;

    public string RegionCode { get; set; } = "default";

    /// <summary>The region's mesh key (64 hex) and the other relays of the region, for the embedded relay.</summary>
    public string? MeshKey { get; set; }

    public string[] MeshPeers { get; set; } = [];

    /// <summary>How long a relay ticket is valid; sessions renew it at half its life.</summary>
    public double TicketLifetimeMinutes { get; set; } = 60;

    /// <summary>
    /// How often the embedded relay asks the tailnets again whether each of its live connections' node keys
    /// still has access, closing those that lost it (0: only at login). A revocation is sent to every node at
    /// once; this catches what a node missed, and keys rotated away, within the interval.
    /// </summary>
    public double AccessRecheckSeconds { get; set; } = 300;

    /// <summary>The relay map agents receive; empty: the embedded relay alone (or, with it off, no relays at all: direct paths only).</summary>
    public RelayRegionSettings[] Regions { get; set; } = [];

    public IEnumerable<string> Problems(string prefix)
    {
        if (Embedded && !IPEndPoint.TryParse(Listen, out _)) yield return $"{prefix}:Listen must be IP:port";
        if (Embedded && Stun != "off" && !IPEndPoint.TryParse(Stun, out _)) yield return $"{prefix}:Stun must be IP:port or off";
        if (TicketLifetimeMinutes is < 1 or > 7 * 24 * 60) yield return $"{prefix}:TicketLifetimeMinutes must be between 1 and 10080";
        if (AccessRecheckSeconds is < 0 or > 86_400) yield return $"{prefix}:AccessRecheckSeconds must be between 0 (off) and 86400";
        if (MeshKey is { } mesh && !Contracts.Keys.KeyEncoding.TryDecodeHex(mesh, new byte[32])) yield return $"{prefix}:MeshKey must be 64 hex characters";
        foreach (var region in Regions)
        {
            if (region.Id <= 0) yield return $"{prefix}:Regions: region ids are positive";
            if (region.Nodes.Length == 0) yield return $"{prefix}:Regions:{region.Id} has no nodes";
            foreach (var node in region.Nodes)
                if (node.Port is < 1 or > 65535 || node.StunPort is < 0 or > 65535) yield return $"{prefix}:Regions:{region.Id}:{node.Name}: ports must be 1-65535 (StunPort 0 for none)";
        }
    }
}

public sealed class RelayRegionSettings
{
    public int Id { get; set; }
    public string Code { get; set; } = "";
    public string Name { get; set; } = "";
    public bool Avoid { get; set; }
    public RelayNodeSettings[] Nodes { get; set; } = [];
}

public sealed class RelayNodeSettings
{
    public string Name { get; set; } = "";
    /// <summary>Empty: the host the agent dialled for control.</summary>
    public string Host { get; set; } = "";
    public int Port { get; set; } = 3340;
    public int StunPort { get; set; } = 3478;
    public bool Tls { get; set; }
    public bool InsecureForTests { get; set; }
}
