using Weft.Cluster.ApiKeys;
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
        new ApiKeyVerified("abcdefghij", ApiKeyScope.Operator),
    ];

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

    // Records holding lists compare by reference; compare their JSON instead.
    private static string Normalize(object message) => System.Text.Json.JsonSerializer.Serialize(message, message.GetType());
}
