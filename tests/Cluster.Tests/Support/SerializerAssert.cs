using Akka.Actor;
using Akka.Serialization;

namespace Weft.Cluster.Tests.Support;

public static class SerializerAssert
{
    /// <summary>
    /// Serializes <paramref name="message"/> with the serializer Akka picks for it (asserting it is a
    /// <typeparamref name="TSerializer"/>), under the manifest that serializer gives, and returns what comes back.
    /// </summary>
    public static object RoundTrip<TSerializer>(ActorSystem system, object message, out string manifest) where TSerializer : Serializer
    {
        var serializer = system.Serialization.FindSerializerFor(message);
        Assert.IsType<TSerializer>(serializer);
        manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
        return system.Serialization.Deserialize(serializer.ToBinary(message), serializer.Identifier, manifest);
    }
}
