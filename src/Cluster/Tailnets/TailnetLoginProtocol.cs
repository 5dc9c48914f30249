using System.Collections.Immutable;
using Weft.Cluster.Messaging;

namespace Weft.Cluster.Tailnets;

// Interactive device login: a device that joins a tailnet with an identity provider, without an auth
// key, gets a login link; the person who opens it signs in at the provider, and the device becomes
// theirs. The tailnet keeps the links it issued (single use, short-lived) and the users the provider
// vouched for.

/// <summary>
/// One login link the tailnet issued for a device. The link's secret is not kept: it is a MAC of
/// <paramref name="LoginId"/> under a key derived from the cluster secret (<see cref="Identity.LoginLinks"/>),
/// so that every node can hand out the same link again while the device waits.
/// </summary>
/// <param name="NodeKey">The node key the device presented when it asked; signing in authorises this key.</param>
/// <param name="UsedBy">The user who signed in with it (a link is used once); null while open.</param>
public sealed record DeviceLogin(
    string LoginId, string DeviceId, string NodeKey, string DiscoKey, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt, string? UsedBy = null)
{
    public bool OpenAt(DateTimeOffset at) => UsedBy is null && at < ExpiresAt;
}

/// <summary>Who the provider says signed in: the issuer and subject are the identity; the email names them (and is their name in policies).</summary>
public sealed record SignedInIdentity(string Issuer, string Subject, string Email, ImmutableArray<string> Groups)
{
    public bool Equals(SignedInIdentity? other) =>
        other is not null && Issuer == other.Issuer && Subject == other.Subject && Email == other.Email && Groups.SequenceEqual(other.Groups);

    public override int GetHashCode() => HashCode.Combine(Issuer, Subject);
}

/// <summary>Why a login link does not work: each its own code, so that the page a person sees says which.</summary>
public static class LoginErrorCodes
{
    public const string Unknown = "login_unknown";
    public const string Used = "login_used";
    public const string Expired = "login_expired";
    public const string NoProvider = "login_no_provider";
    public const string WrongIssuer = "login_wrong_issuer";
    public const string NotAllowed = "login_not_allowed";
    public const string NameTaken = "login_name_taken";
    /// <summary>The provider could not be read, or refused to start a sign-in (for example a redirect URI it does not know).</summary>
    public const string ProviderRefused = "login_provider_refused";
}

// Commands

/// <summary>
/// The person behind a login link signed in at the tailnet's provider (the web layer checked the ID
/// token, the allowed domains and groups). The device becomes theirs and active, with the node key
/// its login carried. Answered with <see cref="DeviceLoginDone"/> (again, for a retry by the same user).
/// </summary>
[WireName("tailnet.complete-device-login")]
public sealed record CompleteDeviceLogin(string TailnetId, string LoginId, SignedInIdentity Identity, string NewUserId, DateTimeOffset At) : ITailnetCommand;

/// <summary>A person signed in to the tailnet's console at its provider: they become (or stay) its user. Answered with <see cref="UserInfo"/>.</summary>
[WireName("tailnet.sign-in-user")]
public sealed record SignInUser(string TailnetId, SignedInIdentity Identity, string NewUserId, DateTimeOffset At) : ITailnetCommand;

// Queries and replies

/// <summary>Is this login link still open? Answered with <see cref="DeviceLoginInfo"/> or a rejection with a <see cref="LoginErrorCodes"/> code.</summary>
[WireName("tailnet.get-device-login")]
public sealed record GetDeviceLogin(string TailnetId, string LoginId, DateTimeOffset At) : ITailnetMessage;

[WireName("tailnet.device-login")]
public sealed record DeviceLoginInfo(string TailnetId, DeviceLogin Login, string Hostname) : IClusterMessage;

/// <summary>The device now belongs to <paramref name="User"/> and runs.</summary>
[WireName("tailnet.device-login-done")]
public sealed record DeviceLoginDone(string TailnetId, DeviceEntry Device, TailnetUser User) : IClusterMessage;

// Events

public sealed record DeviceLoginStarted(DeviceLogin Login) : ITailnetEvent;

public sealed record DeviceLoginCompleted(string LoginId, string UserId) : ITailnetEvent;

/// <summary>A user signed in through the provider: created, or their email or groups refreshed.</summary>
public sealed record UserSignedIn(TailnetUser User) : ITailnetEvent;
