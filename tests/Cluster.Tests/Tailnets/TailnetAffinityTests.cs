using Akka.Cluster.Sharding;
using Weft.Cluster.Devices;
using Weft.Cluster.Tailnets;

namespace Weft.Cluster.Tests.Tailnets;

public class TailnetAffinityTests
{
    private static readonly TailnetAffinity Affinity = new(100);

    [Fact]
    public void The_shard_of_an_id_is_the_one_the_regions_extractors_route_it_to()
    {
        var tailnets = HashCodeMessageExtractor.Create(100, message => (message as ITailnetMessage)?.TailnetId!);
        var devices = HashCodeMessageExtractor.Create(100, message => (message as IDeviceMessage)?.DeviceId!);
        for (var i = 0; i < 2_000; i++)
        {
            var tailnetId = Identifiers.NewTailnetId();
            var deviceId = "dev_" + Identifiers.RandomBase32(12);
            Assert.Equal(tailnets.ShardId(tailnets.EntityId(new GetTailnetPlacement(tailnetId))!, new GetTailnetPlacement(tailnetId)), Affinity.ShardOf(tailnetId));
            Assert.Equal(devices.ShardId(devices.EntityId(new GetDeviceStream(deviceId))!, new GetDeviceStream(deviceId)), Affinity.ShardOf(deviceId));
        }
    }

    [Fact]
    public void A_new_device_id_is_random_well_formed_and_in_its_tailnets_shard()
    {
        var ids = new HashSet<string>();
        for (var t = 0; t < 200; t++)
        {
            var tailnetId = Identifiers.NewTailnetId();
            for (var d = 0; d < 5; d++)
            {
                var id = Affinity.NewDeviceId(tailnetId);
                Assert.Matches("^dev_[a-z2-7]{12}$", id);
                Assert.Equal(Affinity.ShardOf(tailnetId), Affinity.ShardOf(id));
                Assert.True(ids.Add(id), $"{id} was made twice");
            }
        }
        // The ids follow their tailnets over the shards (200 random tailnets reach about 87 of 100), not into a few.
        var shards = ids.Select(Affinity.ShardOf).Distinct().Count();
        Assert.True(shards > 50, $"the devices of 200 tailnets fell into only {shards} shards");
    }

    [Fact]
    public void A_number_of_shards_that_is_not_positive_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TailnetAffinity(0));
    }
}
