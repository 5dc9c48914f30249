using System.Collections.Immutable;
using System.Runtime.Serialization;
using Akka.Actor;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Tests.Persistence;

public class StoredRecordSerializerTests() : Akka.TestKit.Xunit2.TestKit(Support.TestActorSystems.WithWeftSerialization)
{
    private static readonly DateTimeOffset At = new DateTimeOffset(2026, 11, 25, 12, 34, 56, TimeSpan.Zero).AddTicks(1234567);
    private static readonly TailnetSettings Settings = new(90, "acme.weft.internal");

    /// <summary>One example of every stored record. A new event or snapshot belongs here.</summary>
    public static readonly IStoredRecord[] Samples =
    [
        new TailnetCreated(Settings, At),
        new NodeKeyExpiryChanged(30),
        new DnsSuffixChanged("corp.example.net"),
        new TailnetDeleted(At),
        new TailnetState("tn_abc", TailnetLifecycle.Active, Settings, At),
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
        new ApiKeyRegistryState(ImmutableSortedDictionary<string, ApiKeyRecord>.Empty
            .Add("abcdefghij", new ApiKeyRecord("abcdefghij", ApiKeyScope.Operator, ApiKeyToken.Hash("s"), At))),
    ];

    public static TheoryData<IStoredRecord> AllSamples => new(Samples);

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void Every_stored_record_round_trips_through_the_serializer_akka_picks_for_it(IStoredRecord record)
    {
        var back = Support.SerializerAssert.RoundTrip<StoredRecordSerializer>(Sys, record, out _);

        Assert.Equal(record, back);
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
