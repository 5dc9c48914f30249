using Weft.Cluster.Messaging;
using Weft.Cluster.Persistence;

namespace Weft.Cluster.Tailnets;

// The TailnetActor's protocol: plain records, no Akka types. Commands are verbs, events past tense.

/// <param name="EphemeralTimeoutSeconds">How long an ephemeral device may stay disconnected before it is removed (0: the default, 300 s).</param>
/// <param name="KeylessRegistration">Devices may register without an auth key, to wait for an admin's approval (off by default).</param>
public sealed record TailnetSettings(int NodeKeyExpiryDays, string DnsSuffix, int EphemeralTimeoutSeconds = 0, bool KeylessRegistration = false)
{
    public const int DefaultEphemeralTimeoutSeconds = 300;

    public TimeSpan EphemeralTimeout => TimeSpan.FromSeconds(EphemeralTimeoutSeconds > 0 ? EphemeralTimeoutSeconds : DefaultEphemeralTimeoutSeconds);
}

/// <summary>Anything addressed to one tailnet entity; sharding routes it by <see cref="TailnetId"/>.</summary>
public interface ITailnetMessage : IClusterMessage
{
    string TailnetId { get; }
}

/// <summary>A message that may change the tailnet, and so goes through Decide and the journal.</summary>
public interface ITailnetCommand : ITailnetMessage;

public interface ITailnetEvent : IStoredRecord;

// Commands

/// <summary>Brings a tailnet into being. Sent by the directory; repeating it is harmless.</summary>
[WireName("tailnet.create")]
public sealed record CreateTailnet(string TailnetId, TailnetSettings Settings, DateTimeOffset At) : ITailnetCommand;

/// <summary>Changes the given settings; null means "leave as it is".</summary>
[WireName("tailnet.change-settings")]
public sealed record ChangeTailnetSettings(string TailnetId, int? NodeKeyExpiryDays = null, string? DnsSuffix = null, int? EphemeralTimeoutSeconds = null, bool? KeylessRegistration = null) : ITailnetCommand;

/// <summary>Ends the tailnet. Sent by the directory; repeating it is harmless.</summary>
[WireName("tailnet.delete")]
public sealed record DeleteTailnet(string TailnetId, DateTimeOffset At) : ITailnetCommand;

// Queries and replies

[WireName("tailnet.get")]
public sealed record GetTailnet(string TailnetId) : ITailnetMessage;

/// <summary>Which coordinator node hosts the tailnet's entity now (for operators and failover tests).</summary>
[WireName("tailnet.get-placement")]
public sealed record GetTailnetPlacement(string TailnetId) : ITailnetMessage;

[WireName("tailnet.placement")]
public sealed record TailnetPlacement(string TailnetId, string Node) : IClusterMessage;

[WireName("tailnet.info")]
public sealed record TailnetInfo(string TailnetId, TailnetSettings Settings, DateTimeOffset CreatedAt) : IClusterMessage;

[WireName("tailnet.deleted")]
public sealed record TailnetDeletedAck(string TailnetId) : IClusterMessage;

// Events

public sealed record TailnetCreated(TailnetSettings Settings, DateTimeOffset At) : ITailnetEvent;

public sealed record NodeKeyExpiryChanged(int Days) : ITailnetEvent;

public sealed record DnsSuffixChanged(string DnsSuffix) : ITailnetEvent;

public sealed record EphemeralTimeoutChanged(int Seconds) : ITailnetEvent;

public sealed record KeylessRegistrationChanged(bool Allowed) : ITailnetEvent;

public sealed record TailnetDeleted(DateTimeOffset At) : ITailnetEvent;
