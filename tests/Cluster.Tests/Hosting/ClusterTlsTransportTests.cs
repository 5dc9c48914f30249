using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Remote.Transport;
using Google.Protobuf;
using Weft.ClusterLab;
using Weft.Cluster.Hosting;
using Weft.Cluster.Hosting.Remoting;
using Weft.Cluster.Tests.Support;

namespace Weft.Cluster.Tests.Hosting;

/// <summary>
/// The coordinators' remoting transport, between real actor systems over loopback TCP and TLS. What a
/// node must survive: a peer that cuts a handshake off (it crashed or is shutting down), one that takes
/// the connection and never answers (it hangs), and input that is not a well-formed frame. What must stop
/// it: a peer with another cluster's secret.
/// </summary>
public sealed class ClusterTlsTransportTests : IAsyncDisposable
{
    private static readonly Config NodeConfig = ConfigurationFactory.ParseString("""
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        akka.actor.provider = remote
        akka.remote.retry-gate-closed-for = 200ms
        akka.remote.weft-tls.connection-timeout = 1s
        akka.remote.weft-tls.maximum-frame-size = 2 MiB
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """).WithFallback(ClusterTlsTransport.Configuration("127.0.0.1", 0));

    private readonly List<ActorSystem> _systems = [];

    private static string NewSecretText() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    private static readonly Config ClusterNodeConfig = ConfigurationFactory.ParseString("""
        akka.actor.provider = cluster
        akka.cluster.downing-provider-class = ""
        """).WithFallback(NodeConfig);

    private ActorSystem Node(string name, string secretText, bool clusterProvider = false, string? settings = null)
    {
        var config = clusterProvider ? ClusterNodeConfig : NodeConfig;
        if (settings is not null) config = ConfigurationFactory.ParseString(settings).WithFallback(config);
        var system = ActorSystem.Create(name, BootstrapSetup.Create().WithConfig(config).And(new ClusterTlsSetup(ClusterSecret.FromText(secretText, name))));
        _systems.Add(system);
        return system;
    }

    private static Address AddressOf(ActorSystem system) => ((ExtendedActorSystem)system).Provider.DefaultAddress;

    [Fact]
    public async Task Two_nodes_with_the_same_secret_exchange_messages_in_order_up_to_the_frame_limit()
    {
        var secret = NewSecretText();
        var (left, right) = (Node("left", secret), Node("right", secret));
        right.ActorOf(Props.Create(() => new Echo()), "echo");
        var received = new ConcurrentQueue<object>();
        var collector = left.ActorOf(Props.Create(() => new Collector(received)), "collector");

        var echo = await left.ActorSelection(new RootActorPath(AddressOf(right)) / "user" / "echo").ResolveOne(TimeSpan.FromSeconds(10));
        for (var i = 0; i < 2_000; i++) echo.Tell($"message {i}", collector);
        var large = RandomNumberGenerator.GetBytes(1_500_000); // several TLS records and reads, under the 2 MiB limit
        echo.Tell(large, collector);

        await Eventually.Until(() => received.Count == 2_001, "every message comes back", TimeSpan.FromSeconds(20));
        var all = received.ToArray();
        Assert.Equal(Enumerable.Range(0, 2_000).Select(i => $"message {i}"), all.Take(2_000).Cast<string>());
        Assert.Equal(large, Assert.IsType<byte[]>(all[^1]));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_node_on_Akkas_own_tls_transport_and_one_on_this_transport_talk_whichever_dials(bool akkasDials)
    {
        // What a rolling upgrade from a release on Akka's DotNetty transport meets: both kinds in one cluster.
        var secretText = NewSecretText();
        var secret = ClusterSecret.FromText(secretText, "akkas");
        var akkasConfig = ConfigurationFactory.ParseString("""
            akka.loglevel = WARNING
            akka.stdout-loglevel = WARNING
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0, enable-ssl = true }
            akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
            """);
        var akkas = ActorSystem.Create("mixed", BootstrapSetup.Create().WithConfig(akkasConfig).And(new Akka.Remote.Transport.DotNetty.DotNettySslSetup(
            secret.Certificate, suppressValidation: false, requireMutualAuthentication: true, (certificate, _, _, _, _) => secret.IsClusterPeer(certificate))));
        _systems.Add(akkas);
        var ours = Node("mixed", secretText);
        var (dialler, dialled) = akkasDials ? (akkas, ours) : (ours, akkas);
        dialled.ActorOf(Props.Create(() => new Echo()), "echo");
        var received = new ConcurrentQueue<object>();
        var collector = dialler.ActorOf(Props.Create(() => new Collector(received)), "collector");

        var echo = await dialler.ActorSelection(new RootActorPath(AddressOf(dialled)) / "user" / "echo").ResolveOne(TimeSpan.FromSeconds(10));
        echo.Tell("first", collector);
        var large = RandomNumberGenerator.GetBytes(100_000); // several TLS records, under DotNetty's default frame limit
        echo.Tell(large, collector);
        echo.Tell("last", collector);

        await Eventually.Until(() => received.Count == 3, "every message comes back", TimeSpan.FromSeconds(20));
        var all = received.ToArray();
        Assert.Equal("first", all[0]);
        Assert.Equal(large, Assert.IsType<byte[]>(all[1]));
        Assert.Equal("last", all[2]);
        AssertStillRunning(akkas);
        AssertStillRunning(ours);
    }

    [Fact]
    public async Task A_peer_that_cuts_the_handshake_off_fails_that_attempt_only_and_the_node_carries_on_and_tries_again()
    {
        await using var peer = LoopbackPeer.CuttingHandshakes();
        var node = Node("dialler", NewSecretText());

        await Eventually.Until(() =>
        {
            node.ActorSelection($"akka.ssl.tcp://gone@127.0.0.1:{peer.Port}/user/anyone").Tell("hello");
            return peer.HandshakesCut >= 3;
        }, "the node dials again after each cut-off handshake", TimeSpan.FromSeconds(20));

        AssertStillRunning(node);
    }

    [Fact]
    public async Task A_peer_that_takes_the_connection_and_never_answers_times_out_and_the_node_survives_its_end()
    {
        // A hung node: the kernel takes the connection, the process answers nothing. It is then killed.
        var held = new ConcurrentBag<TcpClient>();
        var killed = new TaskCompletionSource();
        await using var peer = LoopbackPeer.Serving(async (connection, stop) =>
        {
            held.Add(connection);
            await killed.Task.WaitAsync(stop);
        });
        var node = Node("dialler", NewSecretText());

        await Eventually.Until(() =>
        {
            node.ActorSelection($"akka.ssl.tcp://hung@127.0.0.1:{peer.Port}/user/anyone").Tell("hello");
            return held.Count >= 2;
        }, "the first handshake times out (1 s) and the node dials again", TimeSpan.FromSeconds(20));
        killed.SetResult(); // it dies with handshakes in flight: every connection it held closes
        await Task.Delay(TimeSpan.FromMilliseconds(500));

        AssertStillRunning(node);
    }

    [Fact]
    public async Task A_node_that_refuses_the_certificate_of_the_node_it_dials_stops_with_exit_code_79_and_the_other_carries_on()
    {
        var member = Node("member", NewSecretText());
        var stranger = Node("stranger", NewSecretText());

        stranger.ActorSelection(new RootActorPath(AddressOf(member)) / "user" / "anyone").Tell("hello");

        await stranger.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(20));
        var reason = Assert.IsType<ClusterSecretMismatch>(CoordinatedShutdown.Get(stranger).ShutdownReason);
        Assert.Equal(79, reason.ExitCode);
        Assert.Contains("do not hold the same cluster secret", reason.ToString());
        AssertStillRunning(member);
    }

    [Fact]
    public async Task A_member_that_dials_a_node_with_another_secret_refuses_it_says_so_and_stays()
    {
        var member = Node("member", NewSecretText(), clusterProvider: true);
        var cluster = Akka.Cluster.Cluster.Get(member);
        cluster.Join(cluster.SelfAddress);
        await Eventually.Until(() => cluster.SelfMember.Status == Akka.Cluster.MemberStatus.Up, "the member is up", TimeSpan.FromSeconds(20));
        var errors = new ConcurrentQueue<object>();
        member.EventStream.Subscribe(member.ActorOf(Props.Create(() => new Collector(errors))), typeof(Akka.Event.Error));
        // At an address the cluster knows, a node restarted with another secret.
        var restartedWrong = Node("member", NewSecretText());

        await Eventually.Until(() =>
        {
            member.ActorSelection(new RootActorPath(AddressOf(restartedWrong)) / "user" / "anyone").Tell("hello");
            return errors.Any(e => e.ToString()!.Contains("it does not hold this cluster's secret. This node stays"));
        }, "the member refuses the other's certificate", TimeSpan.FromSeconds(20));

        AssertStillRunning(member);
        AssertStillRunning(restartedWrong);
    }

    [Fact]
    public async Task Input_that_is_not_tls_or_a_frame_over_the_limit_closes_that_connection_only()
    {
        var secretText = NewSecretText();
        var node = Node("listener", secretText);
        var port = AddressOf(node).Port!.Value;

        // Not TLS at all (a scanner, an HTTP client on the wrong port): the handshake fails, the connection closes.
        using (var http = new TcpClient())
        {
            await http.ConnectAsync(IPAddress.Loopback, port);
            await http.GetStream().WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
            Assert.Equal(0, await ReadUntilClosed(http.GetStream()));
        }

        // A peer holding the secret whose first frame claims 100 MiB: the connection closes, nothing is allocated for it.
        var secret = ClusterSecret.FromText(secretText, "peer");
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        await using var tls = new SslStream(client.GetStream());
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "127.0.0.1",
            LocalCertificateSelectionCallback = (_, _, _, _, _) => secret.Certificate,
            RemoteCertificateValidationCallback = (_, certificate, _, _) => secret.IsClusterPeer(certificate),
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        });
        var header = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(header, 100 * 1024 * 1024);
        await tls.WriteAsync(header);
        await tls.FlushAsync();
        Assert.Equal(0, await ReadUntilClosed(tls));

        AssertStillRunning(node);
    }

    [Fact]
    public async Task Connections_that_hold_handshakes_open_are_capped_in_all_and_per_address_and_a_node_gets_through_once_they_go()
    {
        // Something on the network opens connections to the cluster port and never completes a handshake. Each one
        // would hold a socket and a TLS state for connection-timeout (here a minute, longer than this test).
        var secret = NewSecretText();
        var node = Node("listener", secret, settings: """
            akka.remote.weft-tls.connection-timeout = 60s
            akka.remote.weft-tls.maximum-pending-handshakes = 3
            akka.remote.weft-tls.maximum-pending-handshakes-per-address = 2
            """);
        node.ActorOf(Props.Create(() => new Echo()), "echo");
        var port = AddressOf(node).Port!.Value;
        var silent = new List<TcpClient>();
        async Task<TcpClient> Open(string from)
        {
            var client = new TcpClient(new IPEndPoint(IPAddress.Parse(from), 0));
            await client.ConnectAsync(IPAddress.Loopback, port);
            return client;
        }
        try
        {
            silent.Add(await Open("127.0.0.1"));
            silent.Add(await Open("127.0.0.1"));
            using (var third = await Open("127.0.0.1"))
                Assert.Equal(0, await ReadUntilClosed(third.GetStream())); // the address's two are taken: closed unanswered
            silent.Add(await Open("127.0.0.2"));
            using (var fourth = await Open("127.0.0.3"))
                Assert.Equal(0, await ReadUntilClosed(fourth.GetStream())); // three pending in all: closed too

            // The three within the limits are still open: the node waits for their handshakes (not past connection-timeout).
            Assert.All(silent, client => Assert.False(client.Client.Poll(0, SelectMode.SelectRead), "a connection within the limits was closed"));
        }
        finally
        {
            foreach (var client in silent) client.Dispose();
        }

        // Their slots are free again once they go: a node that dials in now (from 127.0.0.1 too) is answered.
        var dialler = Node("dialler", secret);
        var received = new ConcurrentQueue<object>();
        var collector = dialler.ActorOf(Props.Create(() => new Collector(received)), "collector");
        await Eventually.Until(() =>
        {
            dialler.ActorSelection(new RootActorPath(AddressOf(node)) / "user" / "echo").Tell("hello", collector);
            return !received.IsEmpty;
        }, "the dialler reaches the node once the silent connections are gone", TimeSpan.FromSeconds(20));
        AssertStillRunning(node);
    }

    [Fact]
    public async Task A_connection_that_Akka_never_claims_is_closed_after_connection_timeout_and_the_other_side_hears_it_end()
    {
        // What Akka does with a connection whose handshake outlived its own handshake-timeout: nothing, its actor is gone.
        var secret = NewSecretText();
        var settings = ConfigurationFactory.ParseString("akka.remote.weft-tls.connection-timeout = 1s")
            .WithFallback(ConfigurationFactory.ParseString(ClusterTlsTransport.Configuration("127.0.0.1", 0))).GetConfig(ClusterTlsTransport.ConfigPath);
        const string withoutRemoting = "akka.actor.provider = local"; // the transports are driven by hand here
        var dialling = new ClusterTlsTransport(Node("dialling", secret, settings: withoutRemoting), settings);
        var listening = new ClusterTlsTransport(Node("listening", secret, settings: withoutRemoting), settings);
        var events = new ConcurrentQueue<IHandleEvent>();
        try
        {
            var (_, dialledListener) = await dialling.Listen();
            dialledListener.SetResult(new AssociationListener(_ => { }));
            var (listeningAddress, inbound) = await listening.Listen();
            // The listening side claims what arrives, as Akka does, and records what it hears.
            inbound.SetResult(new AssociationListener(arrived =>
            {
                if (arrived is InboundAssociation association) association.Association.ReadHandlerSource.SetResult(new HandleListener(events.Enqueue));
            }));

            var unclaimed = await dialling.Associate(listeningAddress);
            Assert.True(unclaimed.Write(ByteString.CopyFromUtf8("written before anyone claimed it")));

            await Eventually.Until(() => events.OfType<Disassociated>().Any(),
                "the dialling side closes the connection nobody claimed, and the listening side hears it end", TimeSpan.FromSeconds(20));
            Assert.Single(events.OfType<Disassociated>());
        }
        finally
        {
            await dialling.Shutdown();
            await listening.Shutdown();
        }
    }

    private static void AssertStillRunning(ActorSystem system)
    {
        Assert.False(system.WhenTerminated.IsCompleted, $"{system.Name} stopped: {CoordinatedShutdown.Get(system).ShutdownReason}");
        Assert.Null(CoordinatedShutdown.Get(system).ShutdownReason);
    }

    /// <summary>Reads until the other side closes; the bytes read (a closed TLS stream may also end with an error).</summary>
    private static async Task<int> ReadUntilClosed(Stream stream)
    {
        var total = 0;
        var buffer = new byte[1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, timeout.Token)) > 0) total += read;
        }
        catch (IOException)
        {
        }
        return total;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var system in _systems) await system.Terminate();
    }

    private sealed class Echo : ReceiveActor
    {
        public Echo() => ReceiveAny(message => Sender.Tell(message));
    }

    private sealed class Collector : ReceiveActor
    {
        public Collector(ConcurrentQueue<object> received) => ReceiveAny(received.Enqueue);
    }

    private sealed class AssociationListener(Action<IAssociationEvent> heard) : IAssociationEventListener
    {
        public void Notify(IAssociationEvent ev) => heard(ev);
    }

    private sealed class HandleListener(Action<IHandleEvent> heard) : IHandleEventListener
    {
        public void Notify(IHandleEvent ev) => heard(ev);
    }
}
