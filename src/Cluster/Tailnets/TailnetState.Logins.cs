using System.Collections.Immutable;
using Weft.Cluster.Persistence;
using Weft.Contracts.Control;

namespace Weft.Cluster.Tailnets;

// Interactive device login (a tailnet with an identity provider): login links, and the users who
// signed in through them.
public sealed partial record TailnetState
{
    /// <summary>A used or expired link is kept this long after it expires, so that opening it again says why it does not work.</summary>
    public static readonly TimeSpan SpentLoginRetention = TimeSpan.FromDays(1);

    /// <summary>
    /// A device that waits to be signed in and whose last login link expired this long ago was given up (a
    /// browser closed, a person the provider's settings refuse, an agent reinstalled with a new machine key):
    /// it is forgotten. Its agent, if it ever asks again, starts over as a new device with a new link.
    /// </summary>
    public static readonly TimeSpan AbandonedSignInAfter = TimeSpan.FromHours(1);

    /// <summary>The login links issued, open or spent (spent ones for <see cref="SpentLoginRetention"/>).</summary>
    public ImmutableSortedDictionary<string, DeviceLogin> Logins { get; init; } = ImmutableSortedDictionary<string, DeviceLogin>.Empty;

    // Why a link signs no one in: the same words wherever it is opened or used.
    private static readonly Rejection NoProvider = new(LoginErrorCodes.NoProvider, "this tailnet signs no one in: it has no identity provider");
    private static readonly Rejection UnknownLogin = new(LoginErrorCodes.Unknown, "this login link is not known: it may have been replaced by a newer one; run weft-agent up again for a new link");
    private static readonly Rejection UsedLogin = new(LoginErrorCodes.Used, "this login link was used already; each link signs in once");

    private static Rejection ExpiredLogin(DeviceLogin login) => new(LoginErrorCodes.Expired, $"this login link expired at {login.ExpiresAt:u}; the waiting agent shows a new one");

    /// <summary>The device's open login link for <paramref name="nodeKey"/>, if it has one.</summary>
    public DeviceLogin? OpenLoginFor(string deviceId, string nodeKey, DateTimeOffset at) =>
        Logins.Values.FirstOrDefault(l => l.DeviceId == deviceId && l.NodeKey == nodeKey && l.OpenAt(at));

    public object LoginInfo(GetDeviceLogin get)
    {
        if (Sso is null) return NoProvider;
        if (!Logins.TryGetValue(get.LoginId, out var login) || !Devices.TryGetValue(login.DeviceId, out var device))
            return UnknownLogin;
        if (login.UsedBy is not null) return UsedLogin;
        if (get.At >= login.ExpiresAt) return ExpiredLogin(login);
        return new DeviceLoginInfo(TailnetId, login, device.Hostname);
    }

    /// <summary>
    /// A registration without an auth key in a tailnet with a provider: a new device waits (pending,
    /// no address) for its person to sign in; an expired one waits to be signed in again. Either gets a
    /// login link unless it holds an open one for the key it presents.
    /// </summary>
    private Decision<ITailnetEvent> InteractiveRegisterDecision(DeviceEntry? existing, RegisterDevice c)
    {
        if (existing is { Status: DeviceStatus.Active } && !existing.KeyLapsedBy(c.At))
            return existing.NodeKey == c.NodeKey
                ? Reported(existing, c)
                : Decision<ITailnetEvent>.Reject(new Rejection(ControlErrorCodes.NodeKeyMismatch, "this device is registered with another node key; it changes its key through RotateNodeKey"));
        if (c.NewLoginId is null || c.LoginExpiresAt <= c.At)
            return Decision<ITailnetEvent>.Reject(Rejection.Invalid("a registration that signs in needs a login id and a future expiry"));
        var events = new List<ITailnetEvent>(4);
        // Its key lapsed and the sweep has not marked it yet: it expires now, and signs in again as an expired device does.
        if (existing is { Status: DeviceStatus.Active }) events.Add(new DeviceExpired(existing.DeviceId, c.At));
        string deviceId;
        if (existing is null)
        {
            if (PendingFlood(c.At) is { } flooded) return Decision<ITailnetEvent>.Reject(flooded);
            var pending = NewDevice(c, DeviceStatus.Pending, userId: null, tags: [], ephemeral: false, keyExpiry: null, authKeyId: null);
            events.Add(new DeviceRegistered(pending));
            deviceId = pending.DeviceId;
        }
        else
        {
            deviceId = existing.DeviceId;
            if (HostinfoChanged(existing, c) is { } reported) events.Add(reported);
        }
        if (OpenLoginFor(deviceId, c.NodeKey, c.At) is null)
        {
            if (Logins.ContainsKey(c.NewLoginId)) return Decision<ITailnetEvent>.Reject(IdTaken("login", c.NewLoginId));
            events.Add(new DeviceLoginStarted(new DeviceLogin(c.NewLoginId, deviceId, c.NodeKey, c.DiscoKey, c.At, c.LoginExpiresAt)));
        }
        return events.Count == 0 ? Decision<ITailnetEvent>.Unchanged : Decision<ITailnetEvent>.Accept(events);
    }

    /// <summary>
    /// Too many devices wait already, or started waiting just now (a flood of unwanted registrations). With a
    /// provider, a device waits only while it holds an open link: one given up blocks no one's sign-in, and
    /// is forgotten soon after (<see cref="AbandonedSignIns"/>).
    /// </summary>
    private Rejection? PendingFlood(DateTimeOffset at)
    {
        var pending = Devices.Values.Where(d => d.Status == DeviceStatus.Pending).ToList();
        var signingIn = Sso is null ? null : Logins.Values.Where(l => l.OpenAt(at)).Select(l => l.DeviceId).ToHashSet(StringComparer.Ordinal);
        var waiting = signingIn is null ? pending.Count : pending.Count(d => signingIn.Contains(d.DeviceId));
        if (waiting >= MaxPendingDevices)
            return new Rejection(ControlErrorCodes.RateLimited, $"{MaxPendingDevices} devices already wait for approval");
        if (pending.Count(d => at - d.CreatedAt < PendingWindow) >= MaxPendingPerWindow)
            return new Rejection(ControlErrorCodes.RateLimited, $"{MaxPendingPerWindow} devices started waiting for approval in the last {PendingWindow.TotalSeconds:0} s");
        return null;
    }

    /// <summary>
    /// The devices that waited to be signed in and were given up: pending, in a tailnet with a provider,
    /// with no login link that expired less than <see cref="AbandonedSignInAfter"/> before <paramref name="at"/>.
    /// (Without a provider a pending device waits for an admin's approval, and stays until the admin acts.)
    /// </summary>
    public IReadOnlyList<string> AbandonedSignIns(DateTimeOffset at)
    {
        if (Sso is null) return [];
        var abandoned = Devices.Values
            .Where(d => d.Status == DeviceStatus.Pending && d.CreatedAt + AbandonedSignInAfter <= at)
            .Select(d => d.DeviceId).ToHashSet(StringComparer.Ordinal);
        if (abandoned.Count == 0) return [];
        foreach (var login in Logins.Values)
            if (login.ExpiresAt + AbandonedSignInAfter > at) abandoned.Remove(login.DeviceId);
        return [.. abandoned.Order(StringComparer.Ordinal)];
    }

    private Decision<ITailnetEvent> CompleteLoginDecision(CompleteDeviceLogin c)
    {
        if (SignedIn(c.Identity, c.NewUserId, c.At, out var signedIn) is { } refused) return Decision<ITailnetEvent>.Reject(refused);
        if (!Logins.TryGetValue(c.LoginId, out var login) || !Devices.TryGetValue(login.DeviceId, out var device))
            return Decision<ITailnetEvent>.Reject(UnknownLogin);
        if (login.UsedBy is { } usedBy)
            return usedBy == signedIn.UserId && device.UserId == usedBy && device.IsActive
                ? Decision<ITailnetEvent>.Unchanged // the same sign-in again: its answer was lost
                : Decision<ITailnetEvent>.Reject(UsedLogin);
        if (c.At >= login.ExpiresAt) return Decision<ITailnetEvent>.Reject(ExpiredLogin(login));
        if (Devices.Values.Any(d => d.NodeKey == login.NodeKey && d.DeviceId != device.DeviceId))
            return Decision<ITailnetEvent>.Reject(new Rejection(ControlErrorCodes.NodeKeyInUse, "another device already uses this device's node key"));

        var events = new List<ITailnetEvent>(4) { new UserSignedIn(signedIn), new DeviceLoginCompleted(login.LoginId, signedIn.UserId) };
        if (device.Status == DeviceStatus.Pending) events.Add(Approved(device, c.At));
        events.Add(new DeviceReauthorized(device.DeviceId, login.NodeKey, login.DiscoKey, KeyExpiryFor(c.At, []), signedIn.UserId, [], null));
        return Decision<ITailnetEvent>.Accept(events);
    }

    /// <summary>A person signed in to the console: they become (or stay) a user, as a member unless they have a role already.</summary>
    private Decision<ITailnetEvent> ConsoleSignInDecision(SignInUser c) =>
        SignedIn(c.Identity, c.NewUserId, c.At, out var signedIn) is { } refused
            ? Decision<ITailnetEvent>.Reject(refused)
            : Decision<ITailnetEvent>.Accept(new UserSignedIn(signedIn));

    /// <summary>The user this identity signs in as, with what the provider says now (email, groups); or why it may not.</summary>
    private Rejection? SignedIn(SignedInIdentity identity, string newUserId, DateTimeOffset at, out TailnetUser signedIn)
    {
        signedIn = null!;
        if (Sso is null) return NoProvider;
        // The provider's own spelling may end in '/' (Auth0's does); the stored issuer never does.
        if (identity.Issuer.TrimEnd('/') != Sso.Issuer.TrimEnd('/'))
            return new Rejection(LoginErrorCodes.WrongIssuer, $"signed in at {identity.Issuer}, but this tailnet's provider is {Sso.Issuer}");
        if (identity.Subject.Length is 0 or > SsoRules.MaxNameLength || identity.Email.Length is 0 or > SsoRules.MaxNameLength)
            return new Rejection(LoginErrorCodes.NotAllowed, "the provider gave no usable subject or email for this user");
        // Decided on the settings in force now: the node that took the provider's answer checked them too, but
        // from its own copy, which an admin's change (fewer domains or groups) may not have reached yet.
        if (Sso.Refuses(identity.Email, identity.Groups) is { } refusal) return new Rejection(LoginErrorCodes.NotAllowed, refusal);
        var user = UserFor(identity);
        var groups = identity.Groups.IsDefault ? [] : identity.Groups.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToImmutableArray();
        signedIn = (user ?? new TailnetUser(newUserId, identity.Email, at))
            with { Name = identity.Email, Issuer = identity.Issuer, Subject = identity.Subject, Groups = groups, LastSignIn = at };
        var id = signedIn.UserId;
        if (Users.Values.FirstOrDefault(u => u.UserId != id && string.Equals(u.Name, identity.Email, StringComparison.OrdinalIgnoreCase)) is { } namesake)
            return new Rejection(LoginErrorCodes.NameTaken, $"another user of this tailnet ({namesake.UserId}) is named {namesake.Name}; an admin must delete or rename one of them");
        if (user is null && (Users.ContainsKey(newUserId) || DeletedUserIds.Contains(newUserId))) return IdTaken("user", newUserId);
        return null;
    }

    /// <summary>
    /// The user this identity already is: the same issuer and subject, or else a user an admin created
    /// by the same name (their email), who has no identity yet and takes this one.
    /// </summary>
    public TailnetUser? UserFor(SignedInIdentity identity) =>
        Users.Values.FirstOrDefault(u => u.Issuer == identity.Issuer && u.Subject == identity.Subject)
        ?? Users.Values.FirstOrDefault(u => !u.FromProvider && string.Equals(u.Name, identity.Email, StringComparison.OrdinalIgnoreCase));

    private TailnetState ApplyLogins(ITailnetEvent @event) => @event switch
    {
        // A device has one open link at a time (a new node key replaces the link of the old one); links spent for a day are forgotten.
        DeviceLoginStarted e => this with
        {
            Logins = Logins.RemoveRange(Logins.Values
                    .Where(l => (l.DeviceId == e.Login.DeviceId && l.OpenAt(e.Login.CreatedAt)) || l.ExpiresAt + SpentLoginRetention < e.Login.CreatedAt)
                    .Select(l => l.LoginId))
                .SetItem(e.Login.LoginId, e.Login),
        },
        DeviceLoginCompleted e => this with { Logins = Logins.SetItem(e.LoginId, Logins[e.LoginId] with { UsedBy = e.UserId }) },
        UserSignedIn e => this with { Users = Users.SetItem(e.User.UserId, e.User), _policy = null }, // the provider's groups are part of the policy
        _ => throw new InvalidOperationException(@event.GetType().Name),
    };
}
