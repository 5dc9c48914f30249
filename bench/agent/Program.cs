// The agent benchmark: one endpoint patch at a time into a large netmap, applied by the real
// DataPlane as a whole-map change (the baseline) and incrementally, in the same run.
using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Google.Protobuf;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Net;
using Weft.NodeAgent.Net.Tun;
using Weft.NodeAgent.Paths;
using Weft.NodeAgent.Tunnels;
using Weft.NodeAgent.WireGuard;

var peers = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 2000;
var deltas = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 2000;
if (peers is < 2 or > 60_000 || deltas is < 1 or > 1_000_000) throw new ArgumentException("peers is 2-60000 and deltas 1-1000000");

using var system = AgentActorSystem.Create("weft-bench-agent");
var tun = new VirtualTun("bench0");
var device = new WireGuardDevice(tun, UdpTransport.Bind(0));
var watchers = new List<IActorRef>();
var control = system.ActorOf(Props.Create(() => new Control(watchers)), "control");
var plane = system.ActorOf(DataPlane.PropsFor(new DataPlaneOptions { Device = device, Link = new NoTunnelLink(), DiscoverEndpoints = false, StaticEndpoints = ["127.0.0.1:41641"] }, control), "data-plane");
device.Start();
// The DataPlane and its PathManager both watch the control client.
while (true)
{
    lock (watchers) if (watchers.Count >= 2) break;
    Thread.Sleep(10);
}
using var nodeKey = Curve25519PrivateKey.Generate();
using var discoKey = Curve25519PrivateKey.Generate();
Broadcast(new NodeKeyChanged(nodeKey.ToHex(), Rotated: false));
Broadcast(new DiscoKeyChanged(discoKey.ToHex()));
Broadcast(new ControlStateChanged(ControlState.Running, null, "bench"));

// The netmap: every peer on loopback (the path finders' pings go nowhere else), a quarter tagged,
// and a filter whose rules name tags, users and addresses, as a company's would.
var store = new NetMapStore();
var map = new NetMap { Version = 1, TailnetId = "tn_bench", Self = Node(0), Filter = new PacketFilter() };
for (var i = 1; i <= peers; i++) map.Peers.Add(Node(i));
map.Filter.Rules.Add(new FilterRule { Sources = { "tag:web" }, Destinations = { "100.64.0.1/32" }, Ports = { new PortRange { First = 443, Last = 443 } }, Protocols = { 6 } });
map.Filter.Rules.Add(new FilterRule { Sources = { "autogroup:member" }, Destinations = { "100.64.0.1/32" }, Ports = { new PortRange { First = 22, Last = 22 } }, Protocols = { 6 } });
map.Filter.Rules.Add(new FilterRule { Sources = { "user:user7@example.com", "100.64.8.0/24" }, Destinations = { "100.64.0.1/32" }, Ports = { new PortRange { First = 0, Last = 65535 } } });
store.Apply(map);
Broadcast(new NetMapChanged(store.View, NetMapApplied.Replaced));
await Settle();

var whole = await Phase(incremental: false);
var incremental = await Phase(incremental: true);
string F(double v) => v.ToString("0.0", CultureInfo.InvariantCulture);
Console.WriteLine($"whole-map apply: {F(whole)} µs of CPU per delta; incremental: {F(incremental)} µs");
Console.WriteLine($"agent: peers={peers} deltas={deltas} whole_us_per_delta={F(whole)} incremental_us_per_delta={F(incremental)} " +
                  $"whole_vs_incremental={(whole / Math.Max(incremental, 1e-9)).ToString("0.0", CultureInfo.InvariantCulture)}");
await system.Terminate();
device.Dispose();
return 0;

// Each phase patches every peer in turn to a new loopback endpoint; the CPU of the whole process is
// measured until every actor involved has drained its mailbox.
async Task<double> Phase(bool incremental)
{
    GC.Collect();
    var cpu = Process.GetCurrentProcess().TotalProcessorTime;
    for (var d = 0; d < deltas; d++)
    {
        var id = $"dev{1 + d % peers}";
        var port = 20_000 + (d + (incremental ? deltas : 0)) % 40_000;
        var delta = new NetMapDelta { BaseVersion = store.Version, Version = store.Version + 1, Patches = { new PeerPatch { Id = id, Endpoints = new EndpointList { Endpoints = { $"127.0.0.1:{port}" } } } } };
        if (store.Apply(delta) != NetMapApplied.Patched) throw new InvalidOperationException("the bench's own delta did not apply");
        var changed = new NetMapChanged(store.View, NetMapApplied.Patched) { Touch = incremental ? store.LastTouch : NetMapTouch.Everything };
        if (incremental && !changed.Touch.PeersOnly) throw new InvalidOperationException("an endpoint patch was not taken for a change of one peer");
        Broadcast(changed);
    }
    await Settle();
    var used = Process.GetCurrentProcess().TotalProcessorTime - cpu;
    Console.WriteLine($"{(incremental ? "incremental" : "whole-map")}: {deltas} deltas into {peers} peers, {used.TotalMilliseconds:0} ms of CPU");
    return used.TotalMicroseconds / deltas;
}

// The DataPlane answers after its mailbox, the tunnels and the path manager after theirs; the path
// finders get a moment for the PeerChanged messages they were sent.
async Task Settle()
{
    var timeout = TimeSpan.FromMinutes(5);
    await plane.Ask<RoutingStatus>(GetRoutingStatus.Instance, timeout);
    await plane.Ask<TunnelStatsReply>(GetTunnelStats.Instance, timeout);
    await plane.Ask<PathStatusReply>(GetPathStatus.Instance, timeout);
    await Task.Delay(500);
}

void Broadcast(object message)
{
    lock (watchers) foreach (var watcher in watchers) watcher.Tell(message);
}

static Node Node(int i)
{
    using var key = Curve25519PrivateKey.Generate();
    using var disco = Curve25519PrivateKey.Generate();
    var node = new Node
    {
        Id = $"dev{i}", Name = $"host{i}", Fqdn = $"host{i}.bench.weft.internal.", Online = true, Status = "active",
        NodeKey = ByteString.CopyFrom(Convert.FromHexString(key.PublicKey.ToHex())), DiscoKey = ByteString.CopyFrom(Convert.FromHexString(disco.PublicKey.ToHex())),
        Addresses = { $"100.64.{(i + 1) / 256}.{(i + 1) % 256}", $"fd7a:115c:a1e0::{i + 1:x}" },
        Endpoints = { $"127.0.0.1:{10_000 + i % 10_000}" },
        User = $"user{i % 50}@example.com",
    };
    if (i % 4 == 0) node.Tags.Add("tag:web");
    return node;
}

/// <summary>Stands in for the ControlClient: it only keeps who watches it.</summary>
sealed class Control : ReceiveActor
{
    public Control(List<IActorRef> watchers)
    {
        Receive<WatchControl>(watch => { lock (watchers) watchers.Add(watch.Watcher); });
        ReceiveAny(_ => { });
    }
}
