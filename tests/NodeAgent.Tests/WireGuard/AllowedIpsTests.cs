using System.Net;
using FsCheck.Xunit;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

public class AllowedIpsTests
{
    private sealed record P(string Name);

    private static readonly P A = new("a"), B = new("b"), C = new("c");

    [Fact]
    public void The_longest_matching_prefix_wins()
    {
        var table = new AllowedIps<P>();
        table.Insert(IpPrefix.Parse("100.64.0.0/10"), A);
        table.Insert(IpPrefix.Parse("100.64.1.0/24"), B);
        table.Insert(IpPrefix.Parse("100.64.1.7/32"), C);

        Assert.Same(C, table.Lookup(IPAddress.Parse("100.64.1.7")));
        Assert.Same(B, table.Lookup(IPAddress.Parse("100.64.1.8")));
        Assert.Same(A, table.Lookup(IPAddress.Parse("100.100.0.1")));
        Assert.Null(table.Lookup(IPAddress.Parse("198.18.0.1")));
    }

    [Fact]
    public void Ipv4_and_ipv6_are_separate_tables()
    {
        var table = new AllowedIps<P>();
        table.Insert(IpPrefix.Parse("0.0.0.0/0"), A);
        table.Insert(IpPrefix.Parse("fd7a:115c:a1e0::/48"), B);

        Assert.Same(A, table.Lookup(IPAddress.Parse("100.64.0.1")));
        Assert.Same(B, table.Lookup(IPAddress.Parse("fd7a:115c:a1e0::5")));
        Assert.Null(table.Lookup(IPAddress.Parse("fd7a:115c:a1e1::5")));
    }

    [Fact]
    public void Inserting_a_prefix_another_peer_holds_moves_it()
    {
        var table = new AllowedIps<P>();
        table.Insert(IpPrefix.Parse("100.64.0.2/32"), A);
        table.Insert(IpPrefix.Parse("100.64.0.2/32"), B);

        Assert.Same(B, table.Lookup(IPAddress.Parse("100.64.0.2")));
        Assert.Empty(table.PrefixesOf(A));
        Assert.Single(table.PrefixesOf(B));
    }

    [Fact]
    public void Removing_a_peer_removes_all_its_prefixes_and_leaves_the_others()
    {
        var table = new AllowedIps<P>();
        table.Insert(IpPrefix.Parse("100.64.0.0/24"), A);
        table.Insert(IpPrefix.Parse("100.64.0.128/25"), B);
        table.Insert(IpPrefix.Parse("fd7a:115c:a1e0::b/128"), B);

        table.RemoveAll(B);

        Assert.Same(A, table.Lookup(IPAddress.Parse("100.64.0.200")));
        Assert.Null(table.Lookup(IPAddress.Parse("fd7a:115c:a1e0::b")));
    }

    [Fact]
    public void Host_bits_are_cleared_on_parse()
    {
        Assert.Equal("100.64.0.0/10", IpPrefix.Parse("100.64.3.4/10").ToString());
        Assert.Equal("fd7a:115c:a1e0::/48", IpPrefix.Parse("fd7a:115c:a1e0:1::1/48").ToString());
        Assert.Equal("100.64.0.1/32", IpPrefix.Parse("100.64.0.1").ToString());
        Assert.False(IpPrefix.TryParse("100.64.0.1/33", out _));
        Assert.False(IpPrefix.TryParse("not-an-ip/8", out _));
        Assert.False(IpPrefix.TryParse("100.64.0.1/-1", out _));
    }

    [Property(MaxTest = 200)]
    public bool Lookups_match_a_linear_scan_after_inserts_and_removals(byte[] script)
    {
        var peers = new[] { A, B, C };
        var table = new AllowedIps<P>();
        var naive = new Dictionary<IpPrefix, P>();
        script ??= [];
        for (var i = 0; i + 3 < script.Length; i += 4)
        {
            var length = script[i] % 33;
            var address = new IPAddress(new byte[] { 100, (byte)(64 + (script[i + 1] & 3)), script[i + 2], script[i + 3] });
            var prefix = new IpPrefix(IpPrefix.Mask(address, length), length);
            var peer = peers[script[i + 1] % 3];
            if ((script[i] & 0x80) != 0 && naive.TryGetValue(prefix, out var owner))
            {
                table.Remove(prefix, owner);
                naive.Remove(prefix);
            }
            else
            {
                table.Insert(prefix, peer);
                naive[prefix] = peer;
            }
        }
        for (var probe = 0; probe < 64; probe++)
        {
            var address = new IPAddress(new byte[] { 100, (byte)(64 + (probe & 3)), (byte)(probe * 37), (byte)(probe * 91) });
            var expected = naive.Where(kv => IpPrefix.Mask(address, kv.Key.Length).Equals(kv.Key.Address))
                .OrderByDescending(kv => kv.Key.Length).Select(kv => kv.Value).FirstOrDefault();
            if (!ReferenceEquals(expected, table.Lookup(address))) return false;
        }
        return true;
    }
}
