using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Weft.Contracts.Stun;

namespace Weft.Relay.Tests;

/// <summary>The relay's STUN server on a real UDP socket, and against Debian's stunclient.</summary>
public class StunServerTests
{
    [Fact]
    public async Task A_binding_request_is_answered_with_the_requests_own_source_address_and_garbage_is_counted()
    {
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        using var udp = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var transaction = StunMessage.NewTransactionId();

        await udp.SendAsync(new byte[] { 1, 2, 3 }, relay.StunEndpoint!);
        await udp.SendAsync(StunMessage.BindingRequestFor(transaction), relay.StunEndpoint!);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var reply = await udp.ReceiveAsync(timeout.Token);

        Assert.Equal(StunError.None, StunMessage.TryReadBindingResponse(reply.Buffer, transaction, out var mapped));
        Assert.Equal(udp.Client.LocalEndPoint, mapped);
        Assert.Equal(1, relay.Counters.RefusedFor("stun_notstun"));
    }

    /// <summary>Debian's stun-client (<c>/usr/bin/stun</c>, Vovida 0.97) speaks RFC 3489 without the magic cookie: the server answers it with MAPPED-ADDRESS.</summary>
    [SkippableFact]
    public async Task Debians_stun_client_reads_its_mapped_address_from_our_server()
    {
        const string tool = "/usr/bin/stun";
        if (!File.Exists(tool))
        {
            Assert.False(Environment.GetEnvironmentVariable("WEFT_REQUIRE_ALL_TESTS") == "1", "stun is missing (package stun-client); test.sh installs it");
            Skip.If(true, "stun is not installed (apt install stun-client)");
        }
        await using var lab = new RelayLab();
        var relay = lab.StartRelay();
        var localPort = FreeUdpPort();
        var run = Process.Start(new ProcessStartInfo(tool, [$"127.0.0.1:{relay.StunEndpoint!.Port}", "1", "-v", "-p", localPort.ToString()])
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = await run.StandardOutput.ReadToEndAsync() + await run.StandardError.ReadToEndAsync();
        await run.WaitForExitAsync();
        Assert.Contains($"MappedAddress = 127.0.0.1:{localPort}", output);
    }

    [Fact]
    public void A_classic_request_asking_to_change_address_is_refused_because_one_socket_cannot_honour_it()
    {
        byte[] request = [0, 1, 0, 8, .. new byte[16], 0, 3, 0, 4, 0, 0, 0, 6];
        Assert.Equal(StunError.UnknownRequiredAttribute, StunMessage.TryReadClassicBindingRequest(request, out _));
        request[^1] = 0;
        Assert.Equal(StunError.None, StunMessage.TryReadClassicBindingRequest(request, out var id));
        Assert.Equal(16, id.Length);
    }

    private static int FreeUdpPort()
    {
        using var socket = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.Client.LocalEndPoint!).Port;
    }
}
