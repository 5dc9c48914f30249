using System.Collections.Immutable;
using System.Runtime.Serialization;
using Akka.Actor;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Control;
using Weft.Cluster.Devices;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Tests.Persistence;

public class StoredRecordSerializerTests() : Akka.TestKit.Xunit2.TestKit(Support.TestActorSystems.WithWeftSerialization)
{
    private static readonly DateTimeOffset At = new DateTimeOffset(2026, 11, 25, 12, 34, 56, TimeSpan.Zero).AddTicks(1234567);
    private static readonly TailnetSettings Settings = new(90, "acme.weft.internal", 600, KeylessRegistration: true);
    private static readonly string Key1 = new('a', 64);
    private static readonly string Key2 = new('b', 64);
    private static readonly TailnetUser Alice = new("usr_alice", "alice@example.com", At);
    private static readonly TailnetUser SignedInBob = new("usr_bob", "bob@example.com", At)
    {
        Issuer = "https://id.example.com", Subject = "sub-bob", Groups = ["eng", "ops"], LastSignIn = At.AddHours(2),
    };
    private static readonly DeviceLogin OpenLogin = new("login_open", "dev_server", Key1, Key2, At, At.AddMinutes(10));
    private static readonly DeviceLogin UsedLogin = OpenLogin with { LoginId = "login_used", UsedBy = "usr_bob" };
    private static readonly AuthKey TaggedKey = new("kkkkkkkkkk", ApiKeyToken.Hash("k"), null, true, true, ["tag:server"], At, At.AddDays(1), "servers", false, 2);
    private static readonly DeviceEntry Laptop = new(
        "dev_laptop", Key1, Key2, Key1, "laptop", "Laptop", "linux", "usr_alice", [], "100.64.0.1", "fd7a:115c:a1e0::6440:1",
        ["198.18.0.1:41641", "[fd7a:115c:a1e0::1]:41641"], 1, At.AddDays(180), false, DeviceStatus.Active, At, At.AddHours(1), null, "weft-agent 0.5");
    private static readonly DeviceEntry Server = Laptop with
    {
        DeviceId = "dev_server", MachineKey = Key2, NodeKey = Key1, DiscoKey = "", Name = "server", UserId = null, Tags = ["tag:server"],
        Ipv4 = "100.64.0.2", Ipv6 = "fd7a:115c:a1e0::6440:2", Endpoints = [], KeyExpiry = null, Ephemeral = true, Status = DeviceStatus.Pending,
        LastSeen = null, AuthKeyId = "kkkkkkkkkk", RegisteredFrom = "198.18.0.44", AdvertisedRoutes = ["0.0.0.0/0", "198.18.40.0/24", "::/0"], ApprovedRoutes = ["198.18.40.0/24"],
    };

    /// <summary>One example of every stored record. A new event or snapshot belongs here.</summary>
    private static readonly SsoSettings Provider = new("https://id.example.com", "weft", "secret", ["example.com"], ["eng"], "groups", ["openid", "email"]);

    public static readonly IStoredRecord[] Samples =
    [
        new TailnetCreated(Settings, At),
        new NodeKeyExpiryChanged(30),
        new DnsSuffixChanged("corp.example.net"),
        new EphemeralTimeoutChanged(120),
        new KeylessRegistrationChanged(true),
        new PolicyChanged("{ \"acls\": [] } // none", 4, At),
        new TailnetDeleted(At),
        new TailnetState("tn_abc", TailnetLifecycle.Active, Settings, At),
        new TailnetState("tn_abc", TailnetLifecycle.Active, Settings, At)
        {
            Users = ImmutableSortedDictionary<string, TailnetUser>.Empty.Add(Alice.UserId, Alice),
            DeletedUserIds = ImmutableSortedSet.Create(StringComparer.Ordinal, "usr_gone", "usr_left"),
            ForgottenAuthKeyIds = ImmutableSortedSet.Create(StringComparer.Ordinal, "kspent0001", "kspent0002"),
            AuthKeys = ImmutableSortedDictionary<string, AuthKey>.Empty.Add(TaggedKey.KeyId, TaggedKey),
            Devices = ImmutableSortedDictionary<string, DeviceEntry>.Empty.Add(Laptop.DeviceId, Laptop).Add(Server.DeviceId, Server),
            NextAddressOffset = 3,
            PolicyText = "{ \"acls\": [] }",
            PolicyVersion = 5,
            PolicyUpdatedAt = At,
            Sso = Provider,
        },
        new TailnetState("tn_sso", TailnetLifecycle.Active, Settings, At)
        {
            Users = ImmutableSortedDictionary<string, TailnetUser>.Empty.Add(Alice.UserId, Alice).Add(SignedInBob.UserId, SignedInBob),
            Sso = Provider,
            Logins = ImmutableSortedDictionary<string, DeviceLogin>.Empty.Add(OpenLogin.LoginId, OpenLogin).Add(UsedLogin.LoginId, UsedLogin),
        },
        new DeviceLoginStarted(OpenLogin),
        new DeviceLoginCompleted("login_used", "usr_bob"),
        new UserSignedIn(SignedInBob with { Role = UserRole.Auditor }),
        new UserRoleChanged("usr_bob", UserRole.Owner),
        new SsoConfigured(Provider),
        new SsoRemoved(),
        new UserCreated(Alice),
        new UserDeleted("usr_alice"),
        new AuthKeyCreated(TaggedKey),
        new AuthKeyRevoked("kkkkkkkkkk"),
        new AuthKeyUsed("kkkkkkkkkk"),
        new AuthKeysForgotten(["kspent0001", "kspent0002"]),
        new DeviceRegistered(Laptop),
        new DeviceRegistered(Server),
        new DeviceReauthorized("dev_laptop", Key2, Key1, At.AddDays(3), "usr_alice", [], "kkkkkkkkkk"),
        new DeviceReauthorized("dev_server", Key2, "", null, null, ["tag:a", "tag:b"], null),
        new DeviceApproved("dev_server", At.AddDays(180)),
        new DeviceApproved("dev_server", null),
        new DeviceApproved("dev_server", At.AddDays(180), "100.64.0.9", "fd7a:115c:a1e0::6440:9", "server"),
        new DeviceRenamed("dev_laptop", "laptop-2"),
        new DeviceTagsChanged("dev_laptop", ["tag:x"], null),
        new DeviceExpired("dev_laptop", At),
        new DeviceDeleted("dev_laptop"),
        new DeviceEndpointsChanged("dev_laptop", ["198.18.0.9:1"], 3, Key1),
        new DeviceNodeKeyRotated("dev_laptop", Key1, At.AddDays(90)),
        new DeviceLastSeen("dev_laptop", At),
        new DeviceHostinfoChanged("dev_laptop", "laptop", "linux", "weft-agent 0.5"),
        new DeviceRoutesAdvertised("dev_laptop", ["0.0.0.0/0", "198.18.40.0/24", "::/0"]),
        new DeviceRoutesApproved("dev_laptop", ["198.18.40.0/24"]),
        new TailnetRegistrationStarted("tn_abc", "acme", Settings, At),
        new TailnetRegistrationCompleted("tn_abc"),
        new TailnetRenamed("tn_abc", "acme-corp"),
        new TailnetRemovalStarted("tn_abc", At),
        new TailnetRemovalCompleted("tn_abc"),
        TailnetDirectoryState.From(
        [
            new DirectoryEntry("tn_abc", "acme", At, DirectoryPhase.Active, Settings),
            new DirectoryEntry("tn_def", "globex", At, DirectoryPhase.Removing, Settings, At.AddMinutes(1)),
            new DirectoryEntry("tn_ghi", "initech", At, DirectoryPhase.Creating, Settings),
        ]),
        new ApiKeyIssued("abcdefghij", ApiKeyScope.Operator, ApiKeyToken.Hash("s"), At),
        new ApiKeyIssued("tenantkey1", ApiKeyScope.Tailnet, ApiKeyToken.Hash("t"), At, "tn_abc", "ci robot"),
        new ApiKeyRevoked("tenantkey1"),
        new ApiKeyRegistryState(ImmutableSortedDictionary<string, ApiKeyRecord>.Empty
            .Add("abcdefghij", new ApiKeyRecord("abcdefghij", ApiKeyScope.Operator, ApiKeyToken.Hash("s"), At))
            .Add("tenantkey1", new ApiKeyRecord("tenantkey1", ApiKeyScope.Tailnet, ApiKeyToken.Hash("t"), At, "tn_abc", "ci robot")),
            ImmutableSortedSet.Create(StringComparer.Ordinal, "revokedkey", "Zrevoked02")),
        new DeviceInitialized("tn_abc"),
        new DeviceHostinfoReported("laptop", "linux", "weft-agent 0.4"),
        new DeviceNodeKeyChanged(Key2),
        new DeviceIncarnationStarted(7),
        new DeviceRemoved(),
        new DeviceState("dev_laptop", "tn_abc", 7, false),
        DeviceState.Empty("dev_new") with { Removed = true },
        new MachineBound("tn_abc", "dev_laptop"),
        new MachineUnbound(),
        new MachineIndexState(Key1, "tn_abc", "dev_laptop"),
        new MachineIndexState(Key1, null, null),
        new CoordinatorKeyCreated(Key1),
        new CoordinatorKeySealed("c2VhbGVkIGtleQ=="),
        new ClusterKeyState("c2VhbGVkIGtleQ==", null),
        new ClusterKeyState(null, Key1),
        new ClusterKeyState(null, null),
        new Weft.Cluster.Audit.AuditRecorded(AuditSample),
        new Weft.Cluster.Audit.AuditLogState("tn_abc", [AuditSample, AuditSample with { Status = 204 }], 9),
        Weft.Cluster.Audit.AuditLogState.Empty("cluster"),
    ];

    // A property: the samples above are built first.
    private static Weft.Cluster.Audit.AuditEntry AuditSample =>
        new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero), "tailnet-key k_abc", "DELETE /api/v1/tailnets/{tailnet}/devices/{device}", "tailnet=acme device=web", 204, "::1");

    public static TheoryData<IStoredRecord> AllSamples => new(Samples);

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void Every_stored_record_round_trips_through_the_serializer_akka_picks_for_it(IStoredRecord record)
    {
        var back = Support.SerializerAssert.RoundTrip<StoredRecordSerializer>(Sys, record, out _);

        // Records holding arrays compare them by reference: compare every field through the JSON form.
        Assert.Equal(record.GetType(), back.GetType());
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(record, record.GetType()), System.Text.Json.JsonSerializer.Serialize(back, back.GetType()));
    }

    [Fact]
    public void Every_stored_record_type_has_a_schema_and_a_sample()
    {
        var recordTypes = typeof(IStoredRecord).Assembly.GetTypes()
            .Where(t => typeof(IStoredRecord).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
            .ToHashSet();

        Assert.Equal(recordTypes.OrderBy(t => t.Name), StoredRecordCatalog.Codecs.RecordTypes.OrderBy(t => t.Name));
        Assert.Equal(recordTypes.OrderBy(t => t.Name), Samples.Select(s => s.GetType()).Distinct().OrderBy(t => t.Name));
    }

    [Fact]
    public void Manifests_are_short_stable_names_not_type_names()
    {
        foreach (var manifest in StoredRecordCatalog.Codecs.Manifests)
        {
            Assert.DoesNotContain("Weft", manifest);
            Assert.True(manifest.Length <= 32, manifest);
        }
        Assert.Equal("tn.created", StoredRecordCatalog.Codecs.ManifestOf(Samples[0]));
    }

    [Fact]
    public void A_device_initialized_by_an_older_version_still_recovers_its_tailnet()
    {
        // Older versions kept keys and hostinfo in the device entity; the tailnet keeps them now.
        var old = new Weft.Cluster.Devices.Stored.DeviceInitialized { TailnetId = "tn_abc", MachineKey = Key1, NodeKey = Key2, Hostname = "laptop", Os = "linux" };

        var decoded = StoredRecordCatalog.Codecs.Decode(Google.Protobuf.MessageExtensions.ToByteArray(old), "dev.initialized");

        Assert.Equal(new DeviceInitialized("tn_abc"), decoded);
        var state = DeviceState.Empty("dev_laptop").Apply((DeviceInitialized)decoded).Apply(new DeviceHostinfoReported("laptop", "linux", "0.4")).Apply(new DeviceNodeKeyChanged(Key2));
        Assert.Equal(new DeviceState("dev_laptop", "tn_abc", 0, false), state);
    }

    [Fact]
    public void An_unknown_manifest_is_a_clear_serialization_error()
    {
        var error = Assert.Throws<SerializationException>(() => StoredRecordCatalog.Codecs.Decode([], "tn.from-the-future"));
        Assert.Contains("tn.from-the-future", error.Message);
    }

    [Fact]
    public void Corrupt_bytes_are_a_clear_serialization_error()
    {
        var error = Assert.Throws<SerializationException>(() => StoredRecordCatalog.Codecs.Decode([0xff, 0xff, 0xff], "tn.created"));
        Assert.Contains("corrupt", error.Message);
    }
}
