using Akka.Configuration;
using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Hosting;

/// <summary>
/// Binds Weft's two serializers: protobuf for everything stored, JSON with wire names for messages
/// between nodes. Both the coordinator and the tests load this one piece of configuration.
/// </summary>
public static class WeftSerialization
{
    public static readonly Config Config = ConfigurationFactory.ParseString($$"""
        akka.actor {
          serializers {
            weft-stored-records = "{{Name(typeof(StoredRecordSerializer))}}"
            weft-cluster-messages = "{{Name(typeof(ClusterMessageSerializer))}}"
          }
          serialization-bindings {
            "{{Name(typeof(IStoredRecord))}}" = weft-stored-records
            "{{Name(typeof(IClusterMessage))}}" = weft-cluster-messages
          }
        }
        """);

    private static string Name(Type type) => $"{type.FullName}, {type.Assembly.GetName().Name}";
}
