using Akka.Actor;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Control;
using Weft.Cluster.Devices;
using Weft.Cluster.Machines;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Tests.Messaging;

public class ClusterMessageSerializerTests() : Akka.TestKit.Xunit2.TestKit(Support.TestActorSystems.WithWeftSerialization)
{
    private static readonly DateTimeOffset At = new(2026, 11, 25, 12, 34, 56, TimeSpan.Zero);
    private static readonly TailnetSettings Settings = new(90, "acme.weft.internal");
    private static readonly TailnetEntry Entry = new("tn_abc", "acme", At);
    private static readonly TailnetInfo Info = new("tn_abc", Settings, At);
    private static readonly string Key = new('c', 64);
    private static readonly ApiKeySummary Summary = new("tenantkey1", ApiKeyScope.Tailnet, "tn_abc", "ci", At);
    private static readonly TailnetUser User = new("usr_a", "alice@example.com", At);
    private static readonly AuthKey AuthKeySample = new("kkkkkkkkkk", "hash", "usr_a", false, true, ["tag:a"], At, At.AddDays(1), "one-off", false, 1);
    private static readonly DeviceEntry Device = new(
        "dev_a", Key, Key, "", "laptop", "Laptop", "linux", "usr_a", [], "100.64.0.1", "fd7a:115c:a1e0::6440:1",
        ["198.18.0.1:41641"], 0, At.AddDays(180), false, DeviceStatus.Active, At, null, "kkkkkkkkkk");

    private static readonly SsoSettings Provider = new("https://id.example.com", "weft", "secret", ["example.com"], [], "groups", ["openid", "email"]);

    /// <summary>One example of every message that may cross between coordinator nodes.</summary>
    public static readonly IClusterMessage[] Samples =
    [
        new Rejection("not_found", "tailnet 'x' does not exist"),
        new CreateTailnet("tn_abc", Settings, At),
        new ChangeTailnetSettings("tn_abc", 30, null),
        new DeleteTailnet("tn_abc", At),
        new GetTailnet("tn_abc"),
        Info,
        new TailnetDeletedAck("tn_abc"),
        new RegisterTailnet("tn_abc", "acme", Settings, At),
        new RenameTailnet("tn_abc", "acme-corp"),
        new RemoveTailnet("tn_abc", At),
        new ListTailnets(),
        new FindTailnet("acme"),
        Entry,
        new TailnetListing([Entry, Entry with { TailnetId = "tn_def", Name = "globex" }]),
        new TailnetRegistered(Entry, Info),
        new TailnetRemoved("tn_abc"),
        new BootstrapOperatorKey("abcdefghij", "hash", At),
        new VerifyApiKey("abcdefghij", "hash"),
        new OperatorKeyBootstrap(true),
        new ApiKeyVerified("abcdefghij", ApiKeyScope.Operator, null),
        new ApiKeyVerified("tenantkey1", ApiKeyScope.Tailnet, "tn_abc"),
        new IssueApiKey("tenantkey1", ApiKeyScope.Tailnet, "tn_abc", "hash", "ci", At),
        new RevokeApiKey("tenantkey1"),
        new RevokeTailnetApiKeys("tn_abc"),
        new ListApiKeys(null),
        Summary,
        new ApiKeyListing([Summary]),
        new CreateUser("tn_abc", "usr_a", "alice@example.com", At),
        new DeleteUser("tn_abc", "usr_a"),
        new CreateAuthKey("tn_abc", "kkkkkkkkkk", "hash", "usr_a", true, false, ["tag:a"], At.AddDays(1), "laptops", At),
        new RevokeAuthKey("tn_abc", "kkkkkkkkkk"),
        new RegisterDevice("tn_abc", "dev_a", Key, Key, "", "host", "linux", null, null, At),
        new RegisterDevice("tn_abc", "dev_a", Key, Key, "", "host", "linux", null, null, At) { NewLoginId = "login_a", LoginExpiresAt = At.AddMinutes(10) },
        new CompleteDeviceLogin("tn_abc", "login_a", new SignedInIdentity("https://id.example.com", "sub-a", "alice@example.com", ["eng"]), "usr_a", At),
        new GetDeviceLogin("tn_abc", "login_a", At),
        new SignInUser("tn_abc", new SignedInIdentity("https://id.example.com", "sub-a", "alice@example.com", []), "usr_a", At),
        new SetUserRole("tn_abc", "usr_a", UserRole.Auditor, ByOwner: false),
        new CreateUser("tn_abc", "usr_b", "bob@example.com", At) { Role = UserRole.Admin, ByOwner = false },
        new DeviceLoginInfo("tn_abc", new DeviceLogin("login_a", "dev_a", Key, Key, At, At.AddMinutes(10)), "laptop"),
        new DeviceLoginDone("tn_abc", Device, User with { Issuer = "https://id.example.com", Subject = "sub-a", Groups = ["eng"], LastSignIn = At }),
        new ApproveDevice("tn_abc", "dev_a", At),
        new RenameDevice("tn_abc", "dev_a", "laptop"),
        new SetDeviceTags("tn_abc", "dev_a", ["tag:a"], At),
        new ExpireDevice("tn_abc", "dev_a", At),
        new DeleteDevice("tn_abc", "dev_a"),
        new DeletePendingDevices("tn_abc", ["dev_a", "dev_b"]),
        new PendingDevicesDeleted("tn_abc", ["dev_a"]),
        new UpdateDeviceEndpoints("tn_abc", "dev_a", ["198.18.0.1:41641"], 1, Key),
        new RotateDeviceNodeKey("tn_abc", "dev_a", Key, Key, At),
        new RecordDeviceLastSeen("tn_abc", "dev_a", At),
        new ExpireDueKeys("tn_abc", At),
        new ForgetAbandonedSignIns("tn_abc", At),
        new ForgetSpentAuthKeys("tn_abc", At),
        new RemoveEphemeralDevice("tn_abc", "dev_a", At),
        new ListUsers("tn_abc"),
        new ListAuthKeys("tn_abc"),
        new ListDevices("tn_abc"),
        new ListDevices("tn_abc") { After = "dev_a", Limit = 500, Status = DeviceStatus.Pending },
        new GetDevice("tn_abc", "dev_a"),
        new GetDeviceNamed("tn_abc", "laptop"),
        new SendNetMap("tn_abc", "dev_a"),
        new SendNetMap("tn_abc", "dev_a", (7UL << 32) | 3, At),
        new GetNetMap("tn_abc", "dev_a"),
        new DeviceOnline("tn_abc", "dev_a", true, At),
        new DeviceOnline("tn_abc", "dev_a", true, At, HoldsEndpoints: true),
        new DeviceOnline("tn_abc", "dev_a", true, At) { Heard = new FanOutStamp(-4_611_686_018_427_387_904, 41) },
        new DeviceReportedAgain("tn_abc", "dev_a"),
        new UserList([User]),
        new UserInfo(User),
        new AuthKeyList([AuthKeySample]),
        new AuthKeyInfo(AuthKeySample),
        new SetSso("tn_abc", Provider),
        new RemoveSso("tn_abc"),
        new GetSso("tn_abc"),
        new SsoInfo("tn_abc", Provider),
        new SsoInfo("tn_abc", null),
        new DeviceInfo(Device, true),
        new DeviceList([new DeviceInfo(Device, false)]),
        new DeviceList([new DeviceInfo(Device, true)], "dev_a"),
        new DeviceRegistration("tn_abc", Device),
        new DeviceRegistration("tn_abc", Device) { Login = new DeviceLogin("login_a", "dev_a", Key, Key, At, At.AddMinutes(10), "usr_a") },
        new NetMapSnapshot("tn_abc", "dev_a", [1, 2, 3]),
        new NetMapSnapshot("tn_abc", "dev_a", [1, 2, 3]) { Stamp = new FanOutStamp(9_007_199_254_740_993, 2) },
        new DeviceDeletedAck("tn_abc", "dev_a"),
        new InitializeDevice("dev_a", "tn_abc"),
        new UpdateDeviceHostinfo("tn_abc", "dev_a", "host", "linux", "0.4"),
        new AdvertiseDeviceRoutes("tn_abc", "dev_a", ["198.18.40.0/24"]),
        new ApproveDeviceRoutes("tn_abc", "dev_a", ["198.18.40.0/24"]),
        new MarkDeviceRemoved("dev_a", "the tailnet was deleted"),
        new ReportEndpointsAgain("dev_a"),
        new StartIncarnation("dev_a"),
        new AttachSession("dev_a", Akka.Actor.ActorRefs.Nobody, 42, true),
        new AttachSession("dev_a", Akka.Actor.ActorRefs.Nobody, 42, false, new UpdateDeviceEndpoints("tn_abc", "dev_a", ["198.18.0.1:41641"], 1, Key)),
        new AttachSession("dev_a", Akka.Actor.ActorRefs.Nobody, 42, false, StartedAt: 638_000_000_000_000_000, RepeatedAt: 638_000_000_010_000_000),
        new ReportEndpoints("dev_a", new UpdateDeviceEndpoints("tn_abc", "dev_a", ["198.18.0.1:41641"], 1, Key)),
        new SessionAttached("dev_a", 42),
        new GetDeviceStream("dev_a"),
        new DeviceStreamInfo("dev_a", 42, false, "akka.tcp://weft@127.0.0.1:4053/user/sessions/$a"),
        new DeviceStreamInfo("dev_a", 0, true, null),
        new PeerChanges("dev_a", [9, 8], false, null, null),
        new PeerChanges("dev_a", [9, 8], false, null, null) { Stamp = new FanOutStamp(long.MaxValue, 3) },
        new PeerChanges("dev_a", [], false, "device_deleted", "gone"),
        new DeviceReady("dev_a", 3),
        new DeviceDone("dev_a"),
        new DeliverToAgent([1, 2]),
        new DeliverToAgent([1, 2], 7),
        new SessionEnded("device_deleted", "gone"),
        new AttachAgain("dev_a"),
        new GetTailnetPlacement("tn_abc"),
        new TailnetPlacement("tn_abc", "akka.tcp://weft@127.0.0.1:4053"),
        new BindMachine(Key, "tn_abc", "dev_a"),
        new UnbindMachine(Key, "dev_a"),
        new LookupMachine(Key),
        new MachineBinding(Key, "tn_abc", "dev_a"),
        new EnsureCoordinatorKey(Key),
        new SetPolicy("tn_abc", "{\"acls\": []}", At),
        new GetPolicy("tn_abc"),
        new ValidatePolicy("tn_abc", "{}"),
        new CheckAccess("tn_abc", "alice@example.com", "tag:web:443", "tcp"),
        new CheckRelayAccess("tn_abc", [Key, new string('d', 64)]),
        new RelayAccess([true, false]),
        new PolicyInfo("{}", 3, At),
        new PolicyValidation([new Weft.Cluster.Policy.PolicyIssue(3, 7, "acls[0].src[1]", "group:x is not defined in groups")], 4, 2),
        new AccessAnswer(true, 2, "acls[2] allows it"),
        new CoordinatorKeyIs(Key),
        new Weft.Cluster.Audit.RecordAudit("tn_abc", AuditSample),
        new Weft.Cluster.Audit.GetAuditLog("tn_abc", At, 100),
        new Weft.Cluster.Audit.AuditAppended("tn_abc", 12),
        new Weft.Cluster.Audit.AuditPage("tn_abc", [AuditSample], true),
        new Weft.Cluster.Audit.GetAuditPlacement("tn_abc"),
        new Weft.Cluster.Audit.AuditPlacement("tn_abc", "akka.tcp://weft@127.0.0.1:4053"),
        new GetMesh("tn_abc"),
        new MeshLinks([new MeshLink("dev_a", "dev_b")]),
        Weft.Cluster.Sessions.CountSessions.Instance,
        new Weft.Cluster.Sessions.SessionCount(12, false),
        new Weft.Cluster.Relays.RevokeRelayAccess([Key, new string('d', 64)], At),
        // A traced command travels as the command's wire name and JSON beside its trace parent.
        new Weft.Cluster.Telemetry.Traced(new RenameDevice("tn_abc", "dev_a", "laptop-2"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ];

    // A property: the samples above are built first.
    private static Weft.Cluster.Audit.AuditEntry AuditSample =>
        new(At, "operator-key k_abc", "POST /api/v1/tailnets/{tailnet}/auth-keys", "tailnet=acme", 201, "198.18.0.7");

    public static TheoryData<IClusterMessage> AllSamples => new(Samples);

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void Every_cluster_message_round_trips_under_its_wire_name(IClusterMessage message)
    {
        var back = Support.SerializerAssert.RoundTrip<ClusterMessageSerializer>(Sys, message, out var manifest);

        Assert.DoesNotContain("Weft", manifest);
        Assert.Equal(Normalize(message), Normalize(back));
    }

    [Fact]
    public void Every_cluster_message_type_has_a_sample()
    {
        Assert.Equal(WireCatalog.AllTypes.OrderBy(t => t.Name), Samples.Select(s => s.GetType()).Distinct().OrderBy(t => t.Name));
    }

    [Fact]
    public void Each_message_serialized_for_another_node_is_counted_with_its_bytes_under_its_wire_name()
    {
        var measured = new System.Collections.Concurrent.ConcurrentBag<(string Instrument, string Type, long Value)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name is "weft.cluster.messages.sent" or "weft.cluster.message.bytes") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            foreach (var tag in tags) if (tag.Key == "type") measured.Add((instrument.Name, (string)tag.Value!, value));
        });
        listener.Start();
        var serializer = (ClusterMessageSerializer)Sys.Serialization.FindSerializerForType(typeof(DeliverToAgent));

        var bytes = serializer.ToBinary(new DeliverToAgent(new byte[300], 42));

        // Other tests may serialize beside this one: this message's own measurements are among those seen.
        Assert.Contains(("weft.cluster.messages.sent", "session.deliver", 1L), measured);
        Assert.Contains(("weft.cluster.message.bytes", "session.deliver", (long)bytes.Length), measured);
    }

    [Fact]
    public void A_relay_access_check_in_the_one_key_shape_of_the_earlier_version_is_refused_as_unknown_rather_than_misread()
    {
        // During a rolling upgrade: a node of the earlier version asks about one key, and answers with one flag.
        var serializer = (ClusterMessageSerializer)Sys.Serialization.FindSerializerForType(typeof(CheckRelayAccess));
        var earlierAsk = System.Text.Encoding.UTF8.GetBytes($"{{\"TailnetId\":\"tn_abc\",\"NodeKey\":\"{Key}\"}}");
        Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary(earlierAsk, "tailnet.check-relay-access"));
        Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary("{\"Allowed\":true}"u8.ToArray(), "tailnet.relay-access"));
        Assert.NotEqual("tailnet.check-relay-access", serializer.Manifest(new CheckRelayAccess("tn_abc", [Key])));
    }

    [Theory]
    [InlineData("tailnet.get", "{\"TailnetId\":5}")]
    [InlineData("tailnet.get", "{\"TailnetId\":")]
    [InlineData("tailnet.get", "[]")]
    [InlineData("traced", "{\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\",\"message\":{}}")]
    [InlineData("traced", "{\"traceparent\":\"x\",\"type\":\"no.such-message\",\"message\":{}}")]
    [InlineData("traced", "{\"type\":\"tailnet.get\",\"message\":{\"TailnetId\":\"tn_abc\"}}")]
    public void A_message_another_version_shaped_differently_is_a_serialization_error_which_remoting_drops_without_ending_the_link(string manifest, string json)
    {
        var serializer = (ClusterMessageSerializer)Sys.Serialization.FindSerializerForType(typeof(GetTailnet));

        var error = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary(System.Text.Encoding.UTF8.GetBytes(json), manifest));

        Assert.Contains(manifest, error.Message);
    }

    [Fact]
    public void A_user_command_without_its_owner_flag_from_a_node_that_did_not_send_it_is_not_an_owners()
    {
        // A node of an earlier version sends no ByOwner: deleting or making an owner must be refused, not allowed.
        var serializer = (ClusterMessageSerializer)Sys.Serialization.FindSerializerForType(typeof(DeleteUser));
        var delete = (DeleteUser)serializer.FromBinary("""{"TailnetId":"tn_abc","UserId":"usr_a"}"""u8.ToArray(), "tailnet.delete-user");
        var create = (CreateUser)serializer.FromBinary("""{"TailnetId":"tn_abc","UserId":"usr_a","Name":"a@example.com","At":"2026-11-25T12:34:56+00:00"}"""u8.ToArray(), "tailnet.create-user");

        Assert.False(delete.ByOwner);
        Assert.False(create.ByOwner);
    }

    [Fact]
    public void An_actor_reference_resolves_to_the_same_actor_after_the_trip()
    {
        var back = (AttachSession)Support.SerializerAssert.RoundTrip<ClusterMessageSerializer>(Sys, new AttachSession("dev_a", TestActor, 7, false), out _);

        Assert.Equal(TestActor, back.Session);
        back.Session.Tell("hello");
        ExpectMsg("hello");
    }

    // Records holding lists compare by reference, and actor references by identity; compare their JSON instead.
    private static readonly System.Text.Json.JsonSerializerOptions NormalizeOptions = new() { Converters = { new ActorPathText() } };

    private static string Normalize(object message) => System.Text.Json.JsonSerializer.Serialize(message, message.GetType(), NormalizeOptions);

    private sealed class ActorPathText : System.Text.Json.Serialization.JsonConverter<Akka.Actor.IActorRef>
    {
        public override bool CanConvert(Type typeToConvert) => typeof(Akka.Actor.IActorRef).IsAssignableFrom(typeToConvert);

        public override Akka.Actor.IActorRef Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options) =>
            throw new NotSupportedException();

        public override void Write(System.Text.Json.Utf8JsonWriter writer, Akka.Actor.IActorRef value, System.Text.Json.JsonSerializerOptions options) =>
            writer.WriteStringValue(value.Path.ToString());
    }
}
