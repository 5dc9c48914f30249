using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.NodeAgent.Tests.Support;

/// <summary>Peers as a netmap carries them, for tests that hand the data plane a view of their own.</summary>
public static class TestPeers
{
    /// <summary>Peer <paramref name="id"/> with node key <paramref name="key"/>, at 100.64.0.<paramref name="host"/> and a loopback endpoint.</summary>
    public static Node Peer(string id, Curve25519PublicKey key, int host, DateTimeOffset? keyExpiry = null) => new()
    {
        Id = id,
        Name = id,
        NodeKey = ByteString.CopyFrom(key.ToArray()),
        Addresses = { $"100.64.0.{host}/32" },
        Endpoints = { $"127.0.0.1:{40000 + host}" },
        KeyExpiry = keyExpiry is { } at ? Timestamp.FromDateTimeOffset(at) : null,
    };
}
