using System.Collections.Immutable;
using Weft.Cluster.Policy;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;

using static Weft.Cluster.Tests.Tailnets.TailnetDecisions;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>Who hears about a change, and how changes to one recipient merge within a flush window.</summary>
public class PeerFanOutTests
{
    internal static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    internal const string T = "tn_acme";

    internal static TailnetState WithDevices(int count, out List<string> ids)
    {
        var state = TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now));
        state = state.Apply(state.Process(new CreateAuthKey(T, "k", "h", null, true, false, [], Now.AddDays(1), "", Now)).Events.Single());
        ids = [];
        for (var i = 0; i < count; i++)
        {
            var id = $"dev_{i:00}";
            ids.Add(id);
            foreach (var e in state.Process(new RegisterDevice(T, id, $"{i:x64}", $"{i + 100:x64}", "", $"h{i}", "linux", "k", "h", Now)).Events)
                state = state.Apply(e);
        }
        return state;
    }

    private static DeltaAccumulator Collect(TailnetState state, ITailnetCommand command, out TailnetState after) =>
        Collect(state, command, out after, out _);

    /// <summary>What the tailnet collects for one command, with the engine that followed its events (to compare with a compile from scratch).</summary>
    private static DeltaAccumulator Collect(TailnetState state, ITailnetCommand command, out TailnetState after, out PolicyEngine engine)
    {
        var into = new DeltaAccumulator();
        engine = PolicyEngine.Compile(state.Policy, state.PolicyDevices());
        after = state;
        foreach (var e in state.Process(command).Events)
        {
            var next = after.Apply(e);
            PeerFanOut.Collect(e, after, next, engine.Follow(e, next), engine, _ => true, into);
            after = next;
        }
        return into;
    }

    /// <summary>The first of five devices reports new endpoints: what the tailnet collects for the others.</summary>
    private static DeltaAccumulator EndpointChangeInTailnetOfFive(out List<string> ids) => EndpointChangeInTailnetOfFive(out ids, out _, out _);

    private static DeltaAccumulator EndpointChangeInTailnetOfFive(out List<string> ids, out TailnetState after, out UpdateDeviceEndpoints report)
    {
        var state = WithDevices(5, out ids);
        // Reports are soft state: the tailnet applies them (see TailnetActor) and fans them out so.
        report = new UpdateDeviceEndpoints(T, ids[0], ["198.18.0.1:1"], 3, new string('d', 64), Version: 77);
        after = state;
        foreach (var e in state.Process(report).Events) after = after.Apply(e).WithEndpointsReported(ids[0], report.Version);
        var into = new DeltaAccumulator();
        PeerFanOut.EndpointsReported(state, after, ids[0], PolicyEngine.Compile(after.Policy, after.PolicyDevices()), _ => true, into);
        return into;
    }

    [Fact]
    public void The_delta_bytes_built_from_shared_encodings_parse_as_the_delta_itself()
    {
        var into = new DeltaAccumulator();
        var shared = new PeerPatch { Id = "dev_a", Endpoints = new EndpointList { Endpoints = { "198.18.0.1:1" } }, HomeRelay = 2 };
        var node = new Node { Id = "dev_c", Name = "gamma", Endpoints = { "198.18.0.3:1" } };
        foreach (var recipient in new[] { "dev_x", "dev_y" })
        {
            into.Patch(recipient, shared);
            into.Change(recipient, node);
        }
        into.Add("dev_x", new Node { Id = "dev_d", Name = "delta" });
        into.Remove("dev_x", "dev_e");
        into.Patch("dev_x", new PeerPatch { Id = "dev_f", Online = true });
        into.Self("dev_y", new Node { Id = "dev_y", Name = "self" });
        into.Dns("dev_y", new DnsConfig());
        into.Filter("dev_y", new PacketFilter());

        var encodings = new DeltaAccumulator.SharedEncodings();
        var drained = into.Drain().ToList();
        Assert.Equal(2, drained.Count);
        foreach (var (_, pending) in drained)
            Assert.Equal(pending.ToDelta(), NetMapDelta.Parser.ParseFrom(pending.ToDeltaBytes(encodings)));
    }

    [Fact]
    public void Recipients_of_the_same_shared_changes_get_one_array_and_a_recipient_with_its_own_parts_its_own()
    {
        // One endpoint change in a tailnet of five: the four peers' deltas are the same bytes, held once.
        var into = EndpointChangeInTailnetOfFive(out var ids);
        // A fifth recipient hears the same patch and a filter of its own; a sixth the same patches in another order.
        var patch = into.Drain().First().Value.Patches.Values.Single();
        foreach (var peer in ids.Skip(1)) into.Patch(peer, patch);
        into.Patch("dev_own", patch);
        into.Filter("dev_own", new PacketFilter());
        var other = new PeerPatch { Id = "dev_zz", Online = true };
        into.Patch("dev_one_order", patch);
        into.Patch("dev_one_order", other);
        into.Patch("dev_other_order", other);
        into.Patch("dev_other_order", patch);

        var encodings = new DeltaAccumulator.SharedEncodings();
        var bytes = into.Drain().ToDictionary(kv => kv.Key, kv => (Pending: kv.Value, Bytes: kv.Value.ToDeltaBytes(encodings)));

        var shared = bytes[ids[1]].Bytes;
        Assert.All(ids.Skip(2), peer => Assert.Same(shared, bytes[peer].Bytes));
        Assert.NotSame(shared, bytes["dev_own"].Bytes);
        Assert.NotSame(bytes["dev_one_order"].Bytes, bytes["dev_other_order"].Bytes);
        foreach (var (_, (pending, encoded)) in bytes) Assert.Equal(pending.ToDelta(), NetMapDelta.Parser.ParseFrom(encoded));
        // Another flush builds its own: an array is shared within one flush's recipients only.
        into.Patch(ids[1], patch);
        Assert.NotSame(shared, into.Drain().Single().Value.ToDeltaBytes(new DeltaAccumulator.SharedEncodings()));
    }

    [Fact]
    public void An_endpoint_change_goes_as_a_patch_to_every_peer_and_to_nobody_else()
    {
        var into = EndpointChangeInTailnetOfFive(out var ids, out var after, out var report);

        var drained = into.Drain().ToDictionary(kv => kv.Key, kv => kv.Value.ToDelta());
        Assert.Equal(ids.Skip(1).Order(), drained.Keys.Order());
        foreach (var delta in drained.Values)
        {
            var patch = Assert.Single(delta.Patches);
            Assert.Equal(ids[0], patch.Id);
            Assert.Equal(["198.18.0.1:1"], patch.Endpoints.Endpoints);
            Assert.Equal((3, 77L), (patch.HomeRelay, patch.EndpointsVersion));
            Assert.False(patch.HasOnline);
            Assert.Empty(delta.PeersAdded);
        }

        // An older report than the one held changes nothing, however much older (held up across a failover).
        Assert.Empty(after.Process(report with { Endpoints = ["198.18.0.1:2"], Version = 76 }).Events);
        Assert.Empty(after.Process(report with { Endpoints = ["198.18.0.1:2"], Version = 76 - TimeSpan.FromMinutes(5).Ticks }).Events);
    }

    [Fact]
    public void A_registration_with_a_new_disco_key_sends_the_key_alone()
    {
        var state = WithDevices(3, out var ids);
        var device = state.Devices[ids[0]];

        var into = Collect(state, new RegisterDevice(T, "dev_unused", device.MachineKey, device.NodeKey, new string('e', 64), device.Hostname, "linux", "k", "h", Now), out _);

        var toPeers = into.Drain().Where(kv => kv.Key != ids[0]).Select(kv => kv.Value.ToDelta()).ToList();
        Assert.Equal(2, toPeers.Count);
        foreach (var delta in toPeers)
        {
            var patch = Assert.Single(delta.Patches);
            Assert.Equal(new string('e', 64), Convert.ToHexStringLower(patch.DiscoKey.Span));
            Assert.Null(patch.Endpoints);
            Assert.False(patch.HasEndpointsVersion);
        }
    }

    [Fact]
    public void A_user_whose_email_changes_at_sign_in_keeps_their_groups_access_and_every_viewer_learns_the_new_name()
    {
        const string issuer = "https://id.example.com";
        var alice = new SignedInIdentity(issuer, "sub-alice", "alice@example.com", ["eng"]);
        var bob = new SignedInIdentity(issuer, "sub-bob", "bob@example.com", []);
        var state = TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now));
        state = Run(state, new SetSso(T, new SsoSettings(issuer, "weft", "secret", [], [], "", [])));
        foreach (var (device, machine, who, user) in new[] { ("dev_a", 'a', alice, "usr_alice"), ("dev_b", 'b', bob, "usr_bob") })
        {
            state = Run(state, new RegisterDevice(T, device, new string(machine, 64), new string((char)(machine + 2), 64), new string('d', 64), "laptop-" + machine, "linux", null, null, Now)
            {
                NewLoginId = "login_" + machine, LoginExpiresAt = Now.AddMinutes(10),
            });
            state = Run(state, new CompleteDeviceLogin(T, "login_" + machine, who, user, Now.AddMinutes(1)));
        }
        state = Run(state, new SetPolicy(T, """{ "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["bob@example.com:22"] } ] }""", Now.AddMinutes(2)));
        Assert.Contains("dev_a", PolicyEngine.Compile(state.Policy, state.PolicyDevices()).VisiblePeers("dev_b"));

        // Alice signs in again; her provider now gives her another email (her group is the same).
        var into = Collect(state, new SignInUser(T, alice with { Email = "alice2@example.com" }, "usr_unused", Now.AddMinutes(3)), out var after, out var engine);
        Assert.Equal("alice2@example.com", after.Users["usr_alice"].Name);

        var scratch = PolicyEngine.Compile(after.Policy, after.PolicyDevices());
        foreach (var id in new[] { "dev_a", "dev_b" })
        {
            Assert.Equal(scratch.VisiblePeers(id).Order(), engine.VisiblePeers(id).Order());
            Assert.Equal(scratch.FilterOf(id).Select(g => g.Key), engine.FilterOf(id).Select(g => g.Key));
        }
        Assert.Contains("dev_a", engine.VisiblePeers("dev_b")); // still in group:eng, under her new name
        var pending = into.Drain().ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("alice2@example.com", pending["dev_b"].Changed["dev_a"].User);
        Assert.Equal("alice2@example.com", pending["dev_a"].Self?.User);
    }

    [Fact]
    public void A_role_change_under_via_sends_each_router_again_with_the_routes_the_viewer_may_now_use_through_it()
    {
        // Everyone reaches the tag:web router itself; admins may route 198.18.50.0/24 through tag:eu routers only (via).
        var state = TailnetState.Unborn(T).Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now));
        state = Run(state, new SetPolicy(T, """
            { "tagOwners": { "tag:eu": [], "tag:web": [] },
              "grants": [ { "src": ["*"], "dst": ["tag:web"], "ip": ["tcp:22"] },
                          { "src": ["autogroup:admin"], "dst": ["198.18.50.0/24"], "ip": ["*"], "via": ["tag:eu"] } ] }
            """, Now));
        state = Run(state, new CreateUser(T, "usr_owner", "owner@example.com", Now));
        state = Run(state, new CreateUser(T, "usr_alice", "alice@example.com", Now));
        state = Run(state, new CreateAuthKey(T, "k_router", "h1", null, true, false, ["tag:web"], Now.AddDays(1), "", Now));
        state = Run(state, new CreateAuthKey(T, "k_alice", "h2", "usr_alice", true, false, [], Now.AddDays(1), "", Now));
        state = Run(state, new RegisterDevice(T, "router", new string('a', 64), new string('d', 64), "", "router", "linux", "k_router", "h1", Now));
        state = Run(state, new RegisterDevice(T, "laptop", new string('b', 64), new string('e', 64), "", "laptop", "linux", "k_alice", "h2", Now));
        state = Run(state, new AdvertiseDeviceRoutes(T, "router", ["198.18.50.0/24"]));
        state = Run(state, new ApproveDeviceRoutes(T, "router", ["198.18.50.0/24"]));
        var before = PolicyEngine.Compile(state.Policy, state.PolicyDevices());
        Assert.Contains("198.18.50.0/24", NetMapBuilder.NodeFor(state, state.Devices["router"], true, before, "laptop").AllowedIps);

        // Alice becomes an admin: no one starts or stops seeing anyone, but her laptop may no longer route the
        // subnet through this router (not tag:eu). Kept, her packets to it would go where the policy says they may not.
        var into = Collect(state, new SetUserRole(T, "usr_alice", UserRole.Admin, ByOwner: true), out var after, out _);
        var expected = NetMapBuilder.NodeFor(after, after.Devices["router"], true, PolicyEngine.Compile(after.Policy, after.PolicyDevices()), "laptop");
        Assert.DoesNotContain("198.18.50.0/24", expected.AllowedIps);
        var pending = into.Drain().ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(expected.AllowedIps, pending["laptop"].Changed["router"].AllowedIps);
    }

    [Fact]
    public void Within_a_window_the_last_word_on_each_peer_wins_whichever_came_first()
    {
        var into = new DeltaAccumulator();
        into.Remove("r", "back");
        into.Add("r", new Node { Id = "back", Name = "back" }); // removed, then added again: still held, so changed
        into.Remove("r", "flapping");
        into.Add("r", new Node { Id = "flapping", Name = "flapping" });
        into.Remove("r", "flapping"); // removed, added, removed: removed (the recipient held it all along)
        into.Add("r", new Node { Id = "new", Name = "first" });
        into.Change("r", new Node { Id = "new", Name = "second" }); // still new to the recipient: goes as added
        into.Change("r", new Node { Id = "changed", Name = "changed" });
        into.Patch("r", new PeerPatch { Id = "changed", HomeRelay = 7 }); // folded into the whole node
        into.Patch("r", new PeerPatch { Id = "replaced", HomeRelay = 8 });
        into.Change("r", new Node { Id = "replaced", Name = "replaced", HomeRelay = 9 }); // the whole node supersedes the patch

        var delta = Assert.Single(into.Drain()).Value.ToDelta();

        Assert.Equal(["flapping"], delta.PeersRemoved);
        Assert.Empty(delta.Patches);
        Assert.Equal([("new", "second")], delta.PeersAdded.Select(n => (n.Id, n.Name)).OrderBy(n => n.Id));
        Assert.Equal([("back", 0), ("changed", 7), ("replaced", 9)], delta.PeersChanged.Select(n => (n.Id, n.HomeRelay)).OrderBy(n => n.Id));
    }

    [Fact]
    public void Changes_to_one_recipient_within_a_window_merge_into_one_delta()
    {
        var into = new DeltaAccumulator();
        into.Patch("r", new PeerPatch { Id = "p", Endpoints = new EndpointList { Endpoints = { "198.18.0.1:1" } } });
        into.Patch("r", new PeerPatch { Id = "p", Online = true });
        into.Patch("r", new PeerPatch { Id = "p", Endpoints = new EndpointList { Endpoints = { "198.18.0.2:2" } } });
        into.Add("r", new Node { Id = "q", Name = "q" });
        into.Patch("r", new PeerPatch { Id = "q", HomeRelay = 4 });
        into.Add("r", new Node { Id = "gone" });
        into.Remove("r", "gone");
        into.Remove("r", "old");

        var delta = Assert.Single(into.Drain()).Value.ToDelta();

        var patch = Assert.Single(delta.Patches);
        Assert.Equal(["198.18.0.2:2"], patch.Endpoints.Endpoints);
        Assert.True(patch.Online);
        var added = Assert.Single(delta.PeersAdded);
        Assert.Equal(("q", 4), (added.Id, added.HomeRelay)); // the patch folded into the node that goes out whole
        Assert.Equal(["old"], delta.PeersRemoved); // an add then remove within the window is nothing
    }

    [Fact]
    public void A_new_device_is_announced_to_its_peers_and_nothing_is_built_for_it_that_its_first_full_map_would_drop()
    {
        var state = WithDevices(3, out var ids);

        var into = Collect(state, new RegisterDevice(T, "dev_new", new string('f', 64), new string('e', 64), "", "new", "linux", "k", "h", Now), out _);

        // Its peers hear of it. It gets no delta: its entity takes none before its first attach, which
        // asks for the full map (that map holds every peer, its own record and its filter).
        var drained = into.Drain().ToDictionary(kv => kv.Key, kv => kv.Value.ToDelta());
        Assert.Equal(ids.Order(), drained.Keys.Order());
        Assert.All(ids, id => Assert.Equal("dev_new", Assert.Single(drained[id].PeersAdded).Id));
    }

    [Fact]
    public void A_join_its_presence_and_its_first_endpoints_within_one_window_reach_all_its_peers_as_one_array()
    {
        // What a join brings a tailnet within one flush window: the registration, the device online,
        // its first endpoint report. Every peer hears the same, so every peer must hold the same bytes:
        // built once per flush, not once per peer (a join in a tailnet of 1,000 reaches 999 peers).
        var state = WithDevices(5, out var ids);
        var into = Collect(state, new RegisterDevice(T, "dev_new", new string('f', 64), new string('e', 64), "", "new", "linux", "k", "h", Now), out var after);
        var engine = PolicyEngine.Compile(after.Policy, after.PolicyDevices());
        PeerFanOut.Presence("dev_new", true, Now, engine, into);
        var report = new UpdateDeviceEndpoints(T, "dev_new", ["198.18.0.9:41641"], 2, new string('d', 64), Version: 5);
        var reported = after;
        foreach (var e in after.Process(report).Events) reported = reported.Apply(e).WithEndpointsReported("dev_new", report.Version);
        PeerFanOut.EndpointsReported(after, reported, "dev_new", engine, _ => true, into);
        // A second device online in the same window: a patch merged into the first device's patches.
        PeerFanOut.Presence(ids[0], false, Now, engine, into);
        PeerFanOut.Presence(ids[0], true, Now, engine, into);

        var encodings = new DeltaAccumulator.SharedEncodings();
        var bytes = into.Drain().Where(kv => kv.Key != "dev_new").ToDictionary(kv => kv.Key, kv => (Delta: kv.Value.ToDelta(), Bytes: kv.Value.ToDeltaBytes(encodings)));

        var shared = bytes[ids[1]].Bytes;
        Assert.All(ids.Skip(2), peer => Assert.Same(shared, bytes[peer].Bytes));
        var delta = NetMapDelta.Parser.ParseFrom(shared);
        Assert.Equal(bytes[ids[1]].Delta, delta);
        var joined = Assert.Single(delta.PeersAdded);
        Assert.Equal(("dev_new", true, 2, 5L), (joined.Id, joined.Online, joined.HomeRelay, joined.EndpointsVersion));
        Assert.Equal(["198.18.0.9:41641"], joined.Endpoints);
        var back = Assert.Single(delta.Patches);
        Assert.Equal((ids[0], true), (back.Id, back.Online));
        // The first device hears of the join too, with its own patch left out: its own array.
        Assert.Equal("dev_new", Assert.Single(bytes[ids[0]].Delta.PeersAdded).Id);
        Assert.Empty(bytes[ids[0]].Delta.Patches);
    }

    [Fact]
    public void A_deleted_device_is_withdrawn_from_its_peers_and_hears_nothing_more_from_the_fan_out()
    {
        var state = WithDevices(3, out var ids);

        var into = Collect(state, new DeleteDevice(T, ids[1]), out _);

        // The deleted device's own entity is told once, by the tailnet (MarkDeviceRemoved), not by the fan-out
        // (whatever the fan-out collects for a device no longer in the tailnet, the flush leaves out).
        var drained = into.Drain().ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal([ids[1]], drained[ids[0]].ToDelta().PeersRemoved);
        Assert.Equal([ids[1]], drained[ids[2]].ToDelta().PeersRemoved);
        Assert.Null(drained.GetValueOrDefault(ids[1])?.End);
    }

    [Fact]
    public void A_new_agent_version_changes_no_peer_but_a_new_os_reaches_every_viewer()
    {
        var state = WithDevices(3, out var ids);

        var sameOs = Collect(state, new UpdateDeviceHostinfo(T, ids[1], "host-1", state.Devices[ids[1]].Os, "weft-agent 0.5"), out var after);
        Assert.Equal(0, sameOs.RecipientCount);
        Assert.Equal("weft-agent 0.5", after.Devices[ids[1]].AgentVersion);

        var newOs = Collect(state, new UpdateDeviceHostinfo(T, ids[1], "host-1", "freebsd", "weft-agent 0.5"), out _);
        var drained = newOs.Drain().ToDictionary(kv => kv.Key, kv => kv.Value.ToDelta());
        Assert.Equal("freebsd", Assert.Single(drained[ids[0]].PeersChanged).Os);
        Assert.Equal("freebsd", Assert.Single(drained[ids[2]].PeersChanged).Os);
    }

    [Fact]
    public void The_work_for_one_change_grows_with_the_peers_it_reaches_not_with_the_square()
    {
        foreach (var size in new[] { 10, 40 })
        {
            var state = WithDevices(size, out var ids);
            var into = Collect(state, new UpdateDeviceEndpoints(T, ids[0], ["198.18.0.1:1"], 0, ""), out _);
            Assert.Equal(size - 1, into.RecipientCount);
            Assert.All(into.Drain(), kv => Assert.Single(kv.Value.ToDelta().Patches));
        }
    }

    [Fact]
    public void After_a_full_map_a_removal_is_sent_even_if_the_add_it_follows_was_still_pending()
    {
        // a registered b; the add waits in the coalescing window when a full map of a is built (it has b).
        var into = new DeltaAccumulator();
        into.Add("dev_a", new Node { Id = "dev_b", Name = "b" });
        into.Filter("dev_a", new PacketFilter());
        into.Delivered("dev_a");

        // Then b leaves a's view: a must be told, not have the add silently cancelled.
        into.Remove("dev_a", "dev_b");
        var delta = into.Drain().Single(p => p.Key == "dev_a").Value.ToDelta();

        Assert.Equal(["dev_b"], delta.PeersRemoved);
        Assert.Empty(delta.PeersAdded);
        Assert.Null(delta.Filter); // already in the full map
    }

    [Fact]
    public void A_full_map_does_not_swallow_an_end_of_the_session()
    {
        var into = new DeltaAccumulator();
        into.End("dev_a", ControlErrorCodes.DeviceExpired, "expired");
        into.Delivered("dev_a");
        Assert.Equal(ControlErrorCodes.DeviceExpired, into.Drain().Single().Value.End!.Value.Code);
    }
}
