using System.Collections.Frozen;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Weft.NodeAgent.Dns;

/// <summary>A device's MagicDNS name and its tailnet addresses.</summary>
public sealed record DnsHost(string Fqdn, IReadOnlyList<IPAddress> Addresses);

/// <summary>What a name is to a <see cref="DnsNameTable"/>.</summary>
internal enum DnsNameStatus
{
    /// <summary>Outside every zone we serve: not ours to answer.</summary>
    NotOurs,
    /// <summary>Inside one of our zones, and nothing is there: NXDOMAIN.</summary>
    NoSuchName,
    /// <summary>The name exists: a device, a reverse name, a zone apex or a name on the way to one.</summary>
    Exists,
}

/// <summary>The records at one existing name, already in wire form. A zone apex or a name between a zone and a device has none.</summary>
internal sealed class DnsNameEntry
{
    public static readonly DnsNameEntry Empty = new([], [], []);

    public DnsNameEntry(byte[][] ipv4, byte[][] ipv6, byte[][] pointers)
    {
        Ipv4 = ipv4;
        Ipv6 = ipv6;
        Pointers = pointers;
    }

    public byte[][] Ipv4 { get; }
    public byte[][] Ipv6 { get; }
    /// <summary>PTR targets (the device's name), for a reverse name.</summary>
    public byte[][] Pointers { get; }
}

/// <summary>
/// The names MagicDNS answers for: each device's name with its addresses, and the reverse (PTR) name of
/// every address it holds. Immutable, so the agent builds a new one from each netmap and swaps it in
/// while queries keep reading the old one.
/// </summary>
/// <remarks>
/// Names compare case-insensitively (ASCII only, RFC 4343) and a trailing dot is optional. The table
/// is authoritative for the zones it is given plus the reverse zones of the tailnet's address ranges:
/// there, a name it does not hold does not exist (NXDOMAIN); a name outside them is not ours.
/// Lookups take the wire form straight from the query and allocate nothing.
/// </remarks>
public sealed class DnsNameTable
{
    /// <summary>
    /// The reverse zones of 100.64.0.0/10 (RFC 6598; 64.100.in-addr.arpa to 127.100.in-addr.arpa, as
    /// /10 is not on an octet boundary) and of fd7a:115c:a1e0::/48, the tailnet's IPv6 prefix.
    /// </summary>
    public static IReadOnlyList<string> TailnetReverseZones { get; } =
        [.. Enumerable.Range(64, 64).Select(octet => $"{octet}.100.in-addr.arpa"), "0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa"];

    /// <summary>No devices and no zones of our own: every forward name is refused.</summary>
    public static DnsNameTable Empty { get; } = new([], []);

    private readonly FrozenDictionary<byte[], DnsNameEntry>.AlternateLookup<ReadOnlySpan<byte>> _names;
    private readonly FrozenSet<byte[]>.AlternateLookup<ReadOnlySpan<byte>> _zones;

    /// <summary>Builds the table.</summary>
    /// <param name="hosts">Each device once; its name must be inside one of <paramref name="zones"/>.</param>
    /// <param name="zones">The suffixes to be authoritative for, such as "acme.weft.internal".</param>
    /// <exception cref="ArgumentException">A name is not a valid ASCII DNS name, lies outside every zone, or appears twice; or two devices share an address.</exception>
    public DnsNameTable(IEnumerable<DnsHost> hosts, IEnumerable<string> zones)
    {
        var zoneNames = zones.Select(Normalize).Distinct(StringComparer.Ordinal).ToList();
        var zoneSet = zoneNames.Concat(TailnetReverseZones).Select(Encode).ToHashSet(WireNameComparer.Instance);
        var entries = new Dictionary<byte[], EntryBuilder>(WireNameComparer.Instance);
        foreach (var zone in zoneSet) entries[zone] = new EntryBuilder();

        var ptrOwners = new Dictionary<byte[], string>(WireNameComparer.Instance);
        var hostCount = 0;
        foreach (var host in hosts)
        {
            var name = Encode(host.Fqdn);
            if (!AddPathToZone(name, zoneSet, entries))
                throw new ArgumentException($"{host.Fqdn} is inside none of the zones ({string.Join(", ", zoneNames)})", nameof(hosts));
            var entry = entries[name];
            if (entry.IsHost) throw new ArgumentException($"{host.Fqdn} appears twice", nameof(hosts));
            entry.IsHost = true;
            hostCount++;

            foreach (var given in host.Addresses)
            {
                var address = given.IsIPv4MappedToIPv6 ? given.MapToIPv4() : given;
                var bytes = address.GetAddressBytes();
                var family = address.AddressFamily == AddressFamily.InterNetwork ? entry.Ipv4 : entry.Ipv6;
                if (family.Any(known => known.AsSpan().SequenceEqual(bytes))) continue;
                family.Add(bytes);

                var reverse = Encode(ReverseName(address));
                if (ptrOwners.TryGetValue(reverse, out var owner))
                    throw new ArgumentException($"address {address} belongs to both {owner} and {host.Fqdn}", nameof(hosts));
                ptrOwners[reverse] = host.Fqdn;
                // A reverse name outside the tailnet's ranges is still answered; the table just claims nothing around it.
                AddPathToZone(reverse, zoneSet, entries);
                if (!entries.TryGetValue(reverse, out var reverseEntry)) entries[reverse] = reverseEntry = new EntryBuilder();
                reverseEntry.Pointers.Add(name);
            }
        }

        Zones = zoneNames;
        HostCount = hostCount;
        _names = entries.ToFrozenDictionary(e => e.Key, e => e.Value.Build(), WireNameComparer.Instance)
            .GetAlternateLookup<ReadOnlySpan<byte>>();
        _zones = zoneSet.ToFrozenSet(WireNameComparer.Instance).GetAlternateLookup<ReadOnlySpan<byte>>();
    }

    /// <summary>The forward zones given, lower case and without a trailing dot (the tailnet reverse zones are implied).</summary>
    public IReadOnlyList<string> Zones { get; }

    public int HostCount { get; }

    /// <summary>The PTR name of an address: "2.0.64.100.in-addr.arpa", or the 32-nibble ip6.arpa form (RFC 3596 2.5).</summary>
    public static string ReverseName(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        var bytes = address.GetAddressBytes();
        if (address.AddressFamily == AddressFamily.InterNetwork)
            return $"{bytes[3]}.{bytes[2]}.{bytes[1]}.{bytes[0]}.in-addr.arpa";
        var name = new StringBuilder(72);
        for (var i = bytes.Length - 1; i >= 0; i--)
            name.Append(HexDigit(bytes[i] & 0xF)).Append('.').Append(HexDigit(bytes[i] >> 4)).Append('.');
        return name.Append("ip6.arpa").ToString();
    }

    private static char HexDigit(int nibble) => "0123456789abcdef"[nibble];

    /// <summary>Finds a name given in wire form, in any case.</summary>
    internal DnsNameStatus Find(ReadOnlySpan<byte> name, out DnsNameEntry entry)
    {
        entry = DnsNameEntry.Empty;
        if (name.Length > DnsMessage.MaxNameLength) return DnsNameStatus.NotOurs;
        Span<byte> folded = stackalloc byte[name.Length];
        // Length bytes are at most 63, below 'A', so folding the whole name touches only label bytes.
        for (var i = 0; i < name.Length; i++) folded[i] = name[i] is >= (byte)'A' and <= (byte)'Z' ? (byte)(name[i] | 0x20) : name[i];
        if (_names.TryGetValue(folded, out var found))
        {
            entry = found;
            return DnsNameStatus.Exists;
        }
        // Is the name, or any name above it, one of our zones?
        for (var at = 0; at < folded.Length && folded[at] != 0; at += folded[at] + 1)
            if (_zones.Contains(folded[at..])) return DnsNameStatus.NoSuchName;
        return DnsNameStatus.NotOurs;
    }

    /// <summary>
    /// Adds an empty entry for every name between <paramref name="name"/> and the nearest zone above it
    /// (so that "prod.acme.weft.internal" exists once "db.prod.acme.weft.internal" does, and answers
    /// NODATA rather than NXDOMAIN), and one for the name itself. False if no zone is above it.
    /// </summary>
    private static bool AddPathToZone(byte[] name, HashSet<byte[]> zones, Dictionary<byte[], EntryBuilder> entries)
    {
        var path = new List<byte[]>();
        for (var at = 0; name[at] != 0; at += name[at] + 1)
        {
            var suffix = name[at..];
            if (zones.Contains(suffix))
            {
                foreach (var between in path)
                    if (!entries.ContainsKey(between)) entries[between] = new EntryBuilder();
                return true;
            }
            path.Add(suffix);
        }
        return false;
    }

    private static string Normalize(string name)
    {
        Encode(name); // validates
        return (name.EndsWith('.') ? name[..^1] : name).ToLowerInvariant();
    }

    /// <summary>A presentation name ("Web.Acme.weft.internal.") in lower-case wire form; throws if it is not a valid DNS name.</summary>
    private static byte[] Encode(string name)
    {
        var trimmed = name.EndsWith('.') ? name[..^1] : name;
        if (trimmed.Length == 0) throw new ArgumentException($"\"{name}\" is not a name under any zone", nameof(name));
        var wire = new List<byte>(trimmed.Length + 2);
        foreach (var label in trimmed.Split('.'))
        {
            if (label.Length is 0 or > DnsMessage.MaxLabelLength)
                throw new ArgumentException($"\"{name}\" has a label of {label.Length} characters; labels hold 1 to {DnsMessage.MaxLabelLength}", nameof(name));
            if (!label.All(c => c is > ' ' and < (char)0x7F))
                throw new ArgumentException($"\"{name}\" is not printable ASCII (convert international names to punycode first)", nameof(name));
            wire.Add((byte)label.Length);
            wire.AddRange(label.ToLowerInvariant().Select(c => (byte)c));
        }
        wire.Add(0);
        if (wire.Count > DnsMessage.MaxNameLength)
            throw new ArgumentException($"\"{name}\" is {wire.Count} bytes in wire form; names hold at most {DnsMessage.MaxNameLength}", nameof(name));
        return [.. wire];
    }

    private sealed class EntryBuilder
    {
        public bool IsHost { get; set; }
        public List<byte[]> Ipv4 { get; } = [];
        public List<byte[]> Ipv6 { get; } = [];
        public List<byte[]> Pointers { get; } = [];

        public DnsNameEntry Build() =>
            Ipv4.Count + Ipv6.Count + Pointers.Count == 0 ? DnsNameEntry.Empty : new DnsNameEntry([.. Ipv4], [.. Ipv6], [.. Pointers]);
    }

    /// <summary>Byte-exact comparison of lower-cased wire names, usable with a span so lookups do not allocate.</summary>
    private sealed class WireNameComparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
    {
        public static readonly WireNameComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] name) => GetHashCode(name.AsSpan());

        public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);

        public int GetHashCode(ReadOnlySpan<byte> alternate)
        {
            var hash = new HashCode();
            hash.AddBytes(alternate);
            return hash.ToHashCode();
        }

        public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();
    }
}
