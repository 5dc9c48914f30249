using System.Net;
using System.Net.Sockets;
using Weft.NodeAgent.Dns;
using static Weft.NodeAgent.Tests.Dns.DnsWire;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>
/// Names outside the tailnet go to the upstream resolvers the system had, on real loopback sockets:
/// the upstream here is a UDP socket that answers with a record of its own.
/// </summary>
public sealed class MagicDnsForwardingTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly MagicDnsServer _server = new([new IPEndPoint(IPAddress.Loopback, 0)], MagicDnsResolverTests.Names);
    private readonly UdpClient _upstream = new(new IPEndPoint(IPAddress.Loopback, 0));

    public void Dispose()
    {
        _server.Dispose();
        _upstream.Dispose();
    }

    private IPEndPoint Upstream => (IPEndPoint)_upstream.Client.LocalEndPoint!;

    private async Task<DnsTestResponse> AskAsync(byte[] query)
    {
        using var client = new UdpClient(AddressFamily.InterNetwork);
        await client.SendAsync(query, _server.LocalEndpoints[0]);
        using var timeout = new CancellationTokenSource(Patience);
        return DnsTestResponse.Read((await client.ReceiveAsync(timeout.Token)).Buffer);
    }

    /// <summary>Answers one query the way a recursive resolver would: the question back, and an A record for it.</summary>
    private async Task<byte[]> AnswerOneAsync(string address)
    {
        using var timeout = new CancellationTokenSource(Patience);
        var query = await _upstream.ReceiveAsync(timeout.Token);
        var question = query.Buffer.AsSpan(12).ToArray();
        byte[] answer =
        [
            query.Buffer[0], query.Buffer[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, // response, RD and RA, one question, one answer
            .. question,
            0xC0, 12, .. UInt16(A), .. UInt16(ClassIn), 0, 0, 0, 60, 0, 4, .. IPAddress.Parse(address).GetAddressBytes(),
        ];
        await _upstream.SendAsync(answer, query.RemoteEndPoint);
        return query.Buffer;
    }

    [Fact]
    public async Task A_name_outside_the_tailnet_is_answered_by_the_upstream_with_the_clients_id()
    {
        _server.Upstreams = [Upstream];
        var upstream = AnswerOneAsync("198.18.0.99");

        var response = await AskAsync(Query("example.test", A, id: 0x4242));

        Assert.Equal(0x4242, response.Id);
        Assert.Equal(DnsResponseCode.NoError, response.Code);
        Assert.True(response.RecursionAvailable);
        Assert.Equal("198.18.0.99", response.Addresses.Single().ToString());
        Assert.Equal(Query("example.test", A, id: 0x4242), await upstream); // forwarded as it came
        Assert.Equal(1, _server.Forwarded);

        // The tailnet's own names are still answered here, never forwarded.
        Assert.Equal(MagicDnsResolverTests.WebV4, (await AskAsync(Query("web.acme.weft.internal", A, id: 7))).Addresses.Single().ToString());
        Assert.Equal(DnsResponseCode.NameError, (await AskAsync(Query("nobody.acme.weft.internal"))).Code);
        Assert.Equal(1, _server.Forwarded);
    }

    [Fact]
    public async Task An_upstream_that_never_answers_costs_a_servfail_and_the_next_upstream_is_asked_first()
    {
        using var silent = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        _server.Upstreams = [(IPEndPoint)silent.Client.LocalEndPoint!, Upstream];
        var upstream = AnswerOneAsync("198.18.0.98");

        var response = await AskAsync(Query("example.test", A, id: 9));

        Assert.Equal("198.18.0.98", response.Addresses.Single().ToString()); // the second, after the first's timeout
        await upstream;

        _server.Upstreams = [(IPEndPoint)silent.Client.LocalEndPoint!];
        var failed = await AskAsync(Query("example.test", A, id: 10));
        Assert.Equal((10, DnsResponseCode.ServerFailure), ((int)failed.Id, failed.Code));
    }

    [Fact]
    public async Task Without_upstreams_a_name_outside_the_tailnet_is_refused_as_before()
    {
        Assert.Equal(DnsResponseCode.Refused, (await AskAsync(Query("example.test"))).Code);
        Assert.Equal(0, _server.Forwarded);
    }
}
