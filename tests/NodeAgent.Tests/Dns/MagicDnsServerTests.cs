using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Weft.NodeAgent.Dns;
using Weft.NodeAgent.Tests.Support;
using static Weft.NodeAgent.Tests.Dns.DnsWire;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>MagicDNS on real loopback sockets, asked by a UDP client and by dig.</summary>
public sealed class MagicDnsServerTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    private readonly MagicDnsServer _server = new([new IPEndPoint(IPAddress.Loopback, 0), new IPEndPoint(IPAddress.IPv6Loopback, 0)], MagicDnsResolverTests.Names);

    private IPEndPoint V4 => _server.LocalEndpoints[0];
    private IPEndPoint V6 => _server.LocalEndpoints[1];

    public void Dispose() => _server.Dispose();

    private static async Task<DnsTestResponse> AskAsync(IPEndPoint server, byte[] query)
    {
        using var client = new UdpClient(server.AddressFamily);
        await client.SendAsync(query, server);
        using var timeout = new CancellationTokenSource(Patience);
        var received = await client.ReceiveAsync(timeout.Token);
        Assert.Equal(server, received.RemoteEndPoint);
        return DnsTestResponse.Read(received.Buffer);
    }

    private async Task WaitForCount(Func<MagicDnsServer, long> counter, long expected)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (counter(_server) < expected && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.Equal(expected, counter(_server));
    }

    [Fact]
    public async Task A_query_over_udp_is_answered_on_ipv4_and_ipv6_loopback()
    {
        Assert.NotEqual(0, V4.Port);
        Assert.NotEqual(0, V6.Port);

        var v4 = await AskAsync(V4, Query("web.acme.weft.internal", A, id: 1));
        var v6 = await AskAsync(V6, Query("web.acme.weft.internal", Aaaa, id: 2));

        Assert.Equal((1, MagicDnsResolverTests.WebV4), ((int)v4.Id, v4.Addresses.Single().ToString()));
        Assert.Equal((2, MagicDnsResolverTests.WebV6), ((int)v6.Id, v6.Addresses.Single().ToString()));
        Assert.Equal(2, _server.Answered);
    }

    [Fact]
    public async Task A_new_name_table_answers_from_the_next_query_on()
    {
        Assert.Equal(DnsResponseCode.NameError, (await AskAsync(V4, Query("new.acme.weft.internal"))).Code);

        _server.Names = new DnsNameTable([new DnsHost("new.acme.weft.internal", [IPAddress.Parse("100.64.0.77")])], [MagicDnsResolverTests.Zone]);

        Assert.Equal("100.64.0.77", (await AskAsync(V4, Query("new.acme.weft.internal"))).Addresses.Single().ToString());
        Assert.Equal(DnsResponseCode.NameError, (await AskAsync(V4, Query("web.acme.weft.internal"))).Code);
    }

    [Fact]
    public async Task Garbage_and_refusals_are_counted_and_the_loop_keeps_answering()
    {
        using var client = new UdpClient(AddressFamily.InterNetwork);
        await client.SendAsync(new byte[] { 1, 2, 3 }, V4);                         // no header: dropped
        await client.SendAsync(new byte[DnsMessage.HeaderLength + 5], V4);           // QDCOUNT 0: FORMERR
        await client.SendAsync(new byte[] { 0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0 }, V4); // a response: dropped
        await WaitForCount(s => s.Malformed, 3);

        Assert.Equal(DnsResponseCode.Refused, (await AskAsync(V4, Query("example.com"))).Code);
        Assert.Equal(DnsResponseCode.NotImplemented, (await AskAsync(V4, Query("web.acme.weft.internal", opcode: 4))).Code);
        Assert.Equal(MagicDnsResolverTests.WebV4, (await AskAsync(V4, Query("web.acme.weft.internal"))).Addresses.Single().ToString());
        Assert.Equal((1L, 1L, 1L, 0L), (_server.Refused, _server.Unsupported, _server.Answered, _server.Failed));
    }

    [Fact]
    public void Dispose_stops_the_loops_and_frees_the_ports()
    {
        var endpoint = V4;
        _server.Dispose();
        _server.Dispose(); // twice is harmless

        using var rebound = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        rebound.Bind(endpoint);
    }

    [Fact]
    public void An_endpoint_already_in_use_fails_the_constructor()
    {
        var free = new IPEndPoint(IPAddress.Loopback, 0);
        Assert.Throws<SocketException>(() => new MagicDnsServer([free, V4], DnsNameTable.Empty));
    }

    /// <summary>dig, the tool operators reach for; skipped without it, unless every test is required.</summary>
    private static string RequireDig()
    {
        var dig = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(directory => Path.Combine(directory, "dig")).FirstOrDefault(File.Exists);
        if (dig is not null) return dig;
        Prerequisite.Missing("dig is not on PATH (install bind9-dnsutils)");
        return null!;
    }

    private static async Task<string> DigAsync(string dig, IPEndPoint server, params string[] question)
    {
        var start = new ProcessStartInfo(dig) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[$"@{server.Address}", "-p", server.Port.ToString(), "+time=2", "+tries=1", .. question])
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var errors = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"dig {string.Join(' ', start.ArgumentList)} exited {process.ExitCode}: {await output}{await errors}");
        return (await output).Trim();
    }

    [SkippableFact]
    public async Task Dig_resolves_devices_by_name_and_by_address()
    {
        var dig = RequireDig();

        Assert.Equal(MagicDnsResolverTests.WebV4, await DigAsync(dig, V4, "web.acme.weft.internal", "A", "+short"));
        Assert.Equal(MagicDnsResolverTests.WebV6, await DigAsync(dig, V6, "web.acme.weft.internal", "AAAA", "+short"));
        Assert.Equal("web.acme.weft.internal.", await DigAsync(dig, V4, "-x", MagicDnsResolverTests.WebV4, "+short"));
        Assert.Equal("web.acme.weft.internal.", await DigAsync(dig, V4, "-x", MagicDnsResolverTests.WebV6, "+short"));

        var missing = await DigAsync(dig, V4, "nope.acme.weft.internal", "A");
        Assert.Contains("status: NXDOMAIN", missing);
        Assert.Contains("flags: qr aa rd;", missing);
        Assert.DoesNotContain("malformed", missing, StringComparison.OrdinalIgnoreCase);
    }
}
