using System.Net;
using System.Net.Sockets;
using System.Numerics;

namespace Weft.NodeAgent.WireGuard;

/// <summary>An IP prefix with its host bits cleared, as WireGuard stores allowed IPs.</summary>
public readonly record struct IpPrefix(IPAddress Address, int Length)
{
    public bool IsIPv4 => Address.AddressFamily == AddressFamily.InterNetwork;

    public int MaxLength => IsIPv4 ? 32 : 128;

    public override string ToString() => $"{Address}/{Length}";

    /// <summary>Parses <c>a.b.c.d/n</c>, <c>x::y/n</c>, or a bare address (a /32 or /128). Host bits are cleared, as wg does.</summary>
    public static bool TryParse(string? text, out IpPrefix prefix)
    {
        prefix = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        text = text.Trim();
        var slash = text.IndexOf('/');
        if (!IPAddress.TryParse(slash < 0 ? text : text[..slash], out var address)) return false;
        if (address.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)) return false;
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        var max = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var length = max;
        if (slash >= 0 && (!int.TryParse(text[(slash + 1)..], System.Globalization.NumberStyles.None, null, out length) || length > max)) return false;
        prefix = new IpPrefix(Mask(address, length), length);
        return true;
    }

    public static IpPrefix Parse(string text) =>
        TryParse(text, out var prefix) ? prefix : throw new FormatException($"'{text}' is not an IP prefix");

    internal static IPAddress Mask(IPAddress address, int length)
    {
        var bytes = address.GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(length - i * 8, 0, 8);
            bytes[i] &= (byte)(0xff << (8 - keep));
        }
        return new IPAddress(bytes);
    }
}

/// <summary>
/// WireGuard's routing table: a longest-prefix-match trie from IP prefixes to peers, one for IPv4
/// and one for IPv6 (wireguard-go allowedips.go). Outbound packets find their peer by destination;
/// inbound packets must come from a source that maps back to the peer that sent them.
/// <para>
/// Readers (the packet path) never lock: the tries are immutable and writers swap in new roots
/// built by path copying, so an update costs O(depth) new nodes.
/// </para>
/// </summary>
public sealed class AllowedIps<TPeer> where TPeer : class
{
    private readonly object _write = new();
    private volatile Node? _v4;
    private volatile Node? _v6;
    private readonly Dictionary<TPeer, HashSet<IpPrefix>> _byPeer = new(ReferenceEqualityComparer.Instance);

    private sealed class Node(UInt128 bits, int length, TPeer? peer, Node? zero, Node? one)
    {
        public readonly UInt128 Bits = bits;     // the prefix, left-aligned
        public readonly int Length = length;
        public readonly TPeer? Peer = peer;
        public readonly Node? Zero = zero;
        public readonly Node? One = one;

        public Node? Child(int bit) => bit == 0 ? Zero : One;

        public Node With(TPeer? peer) => new(Bits, Length, peer, Zero, One);

        public Node WithChild(int bit, Node? child) => bit == 0 ? new(Bits, Length, Peer, child, One) : new(Bits, Length, Peer, Zero, child);
    }

    /// <summary>Maps <paramref name="prefix"/> to <paramref name="peer"/>, taking it from any peer that had it.</summary>
    public void Insert(IpPrefix prefix, TPeer peer)
    {
        lock (_write)
        {
            var key = KeyOf(prefix.Address);
            foreach (var set in _byPeer.Values) set.Remove(prefix);
            if (prefix.IsIPv4) _v4 = Insert(_v4, key, prefix.Length, peer);
            else _v6 = Insert(_v6, key, prefix.Length, peer);
            (_byPeer.TryGetValue(peer, out var mine) ? mine : _byPeer[peer] = new HashSet<IpPrefix>()).Add(prefix);
        }
    }

    /// <summary>Removes <paramref name="prefix"/> if <paramref name="peer"/> holds it.</summary>
    public void Remove(IpPrefix prefix, TPeer peer)
    {
        lock (_write)
        {
            if (!_byPeer.TryGetValue(peer, out var mine) || !mine.Remove(prefix)) return;
            var key = KeyOf(prefix.Address);
            if (prefix.IsIPv4) _v4 = Remove(_v4, key, prefix.Length);
            else _v6 = Remove(_v6, key, prefix.Length);
        }
    }

    public void RemoveAll(TPeer peer)
    {
        lock (_write)
        {
            if (!_byPeer.Remove(peer, out var mine)) return;
            foreach (var prefix in mine)
            {
                var key = KeyOf(prefix.Address);
                if (prefix.IsIPv4) _v4 = Remove(_v4, key, prefix.Length);
                else _v6 = Remove(_v6, key, prefix.Length);
            }
        }
    }

    public IReadOnlyList<IpPrefix> PrefixesOf(TPeer peer)
    {
        lock (_write)
            return _byPeer.TryGetValue(peer, out var mine) ? mine.OrderBy(p => p.IsIPv4 ? 0 : 1).ThenBy(p => p.ToString()).ToList() : [];
    }

    /// <summary>Longest-prefix match for a 4-byte (IPv4) or 16-byte (IPv6) address. Lock-free.</summary>
    public TPeer? Lookup(ReadOnlySpan<byte> address)
    {
        UInt128 key;
        Node? node;
        if (address.Length == 4)
        {
            key = (UInt128)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(address) << 96;
            node = _v4;
        }
        else if (address.Length == 16)
        {
            key = System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(address);
            node = _v6;
        }
        else
        {
            return null;
        }

        TPeer? best = null;
        while (node is not null)
        {
            if (CommonPrefix(node.Bits, key) < node.Length) break;
            if (node.Peer is not null) best = node.Peer;
            if (node.Length >= 128) break;
            node = node.Child(BitAt(key, node.Length));
        }
        return best;
    }

    public TPeer? Lookup(IPAddress address) => Lookup(address.GetAddressBytes());

    private static UInt128 KeyOf(IPAddress address)
    {
        var bytes = address.GetAddressBytes();
        return bytes.Length == 4
            ? (UInt128)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes) << 96
            : System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes);
    }

    private static int BitAt(UInt128 key, int index) => (int)((key >> (127 - index)) & 1);

    private static int CommonPrefix(UInt128 a, UInt128 b) => (int)UInt128.LeadingZeroCount(a ^ b);

    private static UInt128 MaskTo(UInt128 key, int length) => length == 0 ? 0 : key & (UInt128.MaxValue << (128 - length));

    private static Node Insert(Node? node, UInt128 key, int length, TPeer peer)
    {
        key = MaskTo(key, length);
        if (node is null) return new Node(key, length, peer, null, null);

        var common = Math.Min(CommonPrefix(node.Bits, key), Math.Min(node.Length, length));
        if (common == node.Length && length == node.Length) return node.With(peer);
        if (common == node.Length)
        {
            var bit = BitAt(key, node.Length);
            return node.WithChild(bit, Insert(node.Child(bit), key, length, peer));
        }
        if (common == length)
        {
            // The new prefix covers the existing node: it becomes the parent.
            var bit = BitAt(node.Bits, length);
            return bit == 0 ? new Node(key, length, peer, node, null) : new Node(key, length, peer, null, node);
        }
        // They diverge at bit `common`: a branch node holds both.
        var leaf = new Node(key, length, peer, null, null);
        return BitAt(key, common) == 0
            ? new Node(MaskTo(key, common), common, null, leaf, node)
            : new Node(MaskTo(key, common), common, null, node, leaf);
    }

    private static Node? Remove(Node? node, UInt128 key, int length)
    {
        key = MaskTo(key, length);
        if (node is null || CommonPrefix(node.Bits, key) < Math.Min(node.Length, length) || length < node.Length) return node;
        Node updated;
        if (node.Length == length)
        {
            updated = node.With(null);
        }
        else
        {
            var bit = BitAt(key, node.Length);
            var child = node.Child(bit);
            var newChild = Remove(child, key, length);
            if (ReferenceEquals(child, newChild)) return node;
            updated = node.WithChild(bit, newChild);
        }
        // A node without a peer is only worth keeping as a branch point.
        if (updated.Peer is null)
        {
            if (updated.Zero is null) return updated.One;
            if (updated.One is null) return updated.Zero;
        }
        return updated;
    }
}
