using System.Collections.Immutable;
using Akka.Actor;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;
using Weft.Contracts.Control;

namespace Weft.Cluster.Api;

/// <summary>
/// What lives inside one tailnet: users, auth keys and devices, under
/// <c>/api/v1/tailnets/{tailnet}/…</c>. Tenant keys reach only their own tailnet.
/// </summary>
public static class MemberEndpoints
{
    /// <summary>How long a device's name is asked for before its tailnet's pages are read instead.</summary>
    private static readonly TimeSpan NamedLookupTimeout = TimeSpan.FromSeconds(4);

    /// <summary>Tailscale's default lifetime for a new auth key.</summary>
    public static readonly TimeSpan DefaultAuthKeyLifetime = TimeSpan.FromDays(90);

    public static void MapMemberEndpoints(this RouteGroupBuilder api)
    {
        var tailnet = api.MapGroup("/tailnets/{tailnet}");
        tailnet.MapGet("/users", ListUsers);
        tailnet.MapPost("/users", CreateUser);
        tailnet.MapDelete("/users/{user}", DeleteUser);
        tailnet.MapPut("/users/{user}/role", SetRole);

        tailnet.MapGet("/auth-keys", ListAuthKeys);
        tailnet.MapPost("/auth-keys", CreateAuthKey);
        tailnet.MapDelete("/auth-keys/{key}", RevokeAuthKey);

        tailnet.MapGet("/devices", ListDevices);
        tailnet.MapGet("/devices/{device}", GetDevice);
        tailnet.MapPost("/devices/{device}/approve", ApproveDevice);
        tailnet.MapPost("/devices/{device}/rename", RenameDevice);
        tailnet.MapPost("/devices/{device}/tags", SetTags);
        tailnet.MapGet("/devices/{device}/routes", GetRoutes);
        tailnet.MapPost("/devices/{device}/routes", ApproveRoutes);
        tailnet.MapPost("/devices/{device}/expire", ExpireDevice);
        tailnet.MapDelete("/devices/{device}", DeleteDevice);
        tailnet.MapDelete("/devices", DeletePendingDevices);
        tailnet.MapGet("/devices/{device}/netmap", GetNetMap);
        tailnet.MapGet("/devices/{device}/stream", GetStream);
    }

    // ------------------------------------------------------------------ users

    private static async Task<IResult> ListUsers(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(entry.TailnetId), http);
        return Results.Json(new UserListResource(users.Users.Select(ToResource).ToList()), AdminJson.Options);
    }

    private static async Task<IResult> CreateUser(HttpContext http, string tailnet, TailnetRefs refs, IdempotentCreation idempotent, TimeProvider clock)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("name", "role");
        var role = body.OptionalString("role") is { } text ? ParseRole(text) : UserRole.Member;
        var ids = await idempotent.IdsFor(http, "user " + entry.TailnetId);
        var created = await refs.Tailnets.AskFor<UserInfo>(
            new CreateUser(entry.TailnetId, "usr_" + ids.Base32("user", 12), body.RequiredString("name"), clock.GetUtcNow())
            {
                Role = role, ByOwner = ApiCaller.Of(http).ActsAsOwner,
            }, http);
        return Results.Json(ToResource(created.User), AdminJson.Options, statusCode: StatusCodes.Status201Created);
    }

    /// <summary><c>PUT …/users/{user}/role</c> with <c>{"role": "admin"}</c>: owner, admin, member or auditor.</summary>
    private static async Task<IResult> SetRole(HttpContext http, string tailnet, string user, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("role");
        var role = ParseRole(body.RequiredString("role"));
        var userId = await ResolveUserId(http, refs, entry.TailnetId, user);
        var changed = await refs.Tailnets.AskFor<UserInfo>(new SetUserRole(entry.TailnetId, userId, role, ApiCaller.Of(http).ActsAsOwner), http);
        return Results.Json(ToResource(changed.User), AdminJson.Options);
    }

    private static UserRole ParseRole(string text) =>
        UserRoles.TryParse(text, out var role) ? role : throw ApiException.Invalid($"role '{text}' is not one of owner, admin, member, auditor");

    private static async Task<IResult> DeleteUser(HttpContext http, string tailnet, string user, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var userId = await ResolveUserId(http, refs, entry.TailnetId, user);
        await refs.Tailnets.Remove(new DeleteUser(entry.TailnetId, userId, ApiCaller.Of(http).ActsAsOwner), http);
        return Results.NoContent();
    }

    /// <summary>A user by id (<c>usr_…</c>) or by name.</summary>
    private static async Task<string> ResolveUserId(HttpContext http, TailnetRefs refs, string tailnetId, string idOrName)
    {
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(tailnetId), http);
        var found = users.Users.FirstOrDefault(u => u.UserId == idOrName)
            ?? users.Users.FirstOrDefault(u => string.Equals(u.Name, idOrName, StringComparison.OrdinalIgnoreCase));
        return found?.UserId ?? throw new ApiException(ApiErrorCodes.NotFound, $"user '{idOrName}' does not exist");
    }

    // ------------------------------------------------------------------ auth keys

    private static async Task<IResult> ListAuthKeys(HttpContext http, string tailnet, TailnetRefs refs, TimeProvider clock)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var keys = await refs.Tailnets.AskFor<AuthKeyList>(new ListAuthKeys(entry.TailnetId), http);
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(entry.TailnetId), http);
        var now = clock.GetUtcNow();
        return Results.Json(new AuthKeyListResource(keys.Keys.Select(k => ToResource(k, users, now)).ToList()), AdminJson.Options);
    }

    private static async Task<IResult> CreateAuthKey(HttpContext http, string tailnet, TailnetRefs refs, IdempotentCreation idempotent, TimeProvider clock)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var body = (await JsonRequestBody.ReadAsync(http.Request))
            .AllowOnly("reusable", "ephemeral", "tags", "expirySeconds", "user", "description");
        var now = clock.GetUtcNow();
        var expirySeconds = body.OptionalInt("expirySeconds") ?? (int)DefaultAuthKeyLifetime.TotalSeconds;
        if (expirySeconds <= 0) throw ApiException.Invalid($"expirySeconds must be positive, got {expirySeconds}");
        var userId = body.OptionalString("user") is { } user ? await ResolveUserId(http, refs, entry.TailnetId, user) : null;
        var tags = (body.OptionalStringList("tags") ?? []).ToImmutableArray();

        var ids = await idempotent.IdsFor(http, "auth-key " + entry.TailnetId);
        var token = AuthKeyToken.Generate(entry.TailnetId, ids);
        var request = new CreateAuthKey(
            entry.TailnetId, token.KeyId, token.SecretHash, userId, body.OptionalBool("reusable") ?? false, body.OptionalBool("ephemeral") ?? false,
            tags, now.AddSeconds(expirySeconds), body.OptionalString("description") ?? "", now);
        var created = await refs.Tailnets.AskFor<AuthKeyInfo>(request, http);
        var key = created.Key;
        if (key.UserId != request.UserId || key.Reusable != request.Reusable || key.Ephemeral != request.Ephemeral
            || !key.Tags.SequenceEqual(request.Tags.Distinct().Order()) || key.Description != request.Description)
            throw new ApiException(ApiErrorCodes.Conflict, $"this {IdempotentCreation.Header} already created auth key {key.KeyId} with other settings; use a new one for a new key");
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(entry.TailnetId), http);
        return Results.Json(new CreatedAuthKeyResource(token.ToString(), ToResource(created.Key, users, now)), AdminJson.Options,
            statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> RevokeAuthKey(HttpContext http, string tailnet, string key, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        await refs.Tailnets.AskFor<AuthKeyInfo>(new RevokeAuthKey(entry.TailnetId, key), http); // revoking twice changes nothing
        return Results.NoContent();
    }

    // ------------------------------------------------------------------ devices

    /// <summary>
    /// Every device, in id order. <c>?limit=N</c> (1 to 1,000) answers one page instead, with a
    /// <c>nextCursor</c> to pass back as <c>?cursor=</c> for the next (none on the last page);
    /// <c>?status=pending|active</c> lists only the devices in that state.
    /// </summary>
    private static async Task<IResult> ListDevices(HttpContext http, string tailnet, TailnetRefs refs)
    {
        var query = http.Request.Query;
        var limit = QueryParameters.Limit(query["limit"], DevicePages.MaxLimit);
        var cursor = ParseCursor(query["cursor"]);
        var status = ParseStatus(query["status"]);
        if (cursor is not null && limit is null) throw ApiException.Invalid("cursor pages through a listing: give limit too (the same as for the first page)");
        var entry = await refs.ResolveAsync(http, tailnet);
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(entry.TailnetId), http);
        if (limit is not { } pageSize)
        {
            var all = await refs.AllDevicesAsync(http, entry.TailnetId, status);
            return Results.Json(new DeviceListResource(all.Select(d => ToResource(d, users)).ToList()), AdminJson.Options);
        }
        var page = await refs.Tailnets.AskFor<DeviceList>(new ListDevices(entry.TailnetId) { After = cursor, Limit = pageSize, Status = status }, http);
        return Results.Json(new DeviceListResource(page.InState(status).Select(d => ToResource(d, users)).ToList(), page.Next), AdminJson.Options);
    }

    /// <summary>A cursor is the id of the last device of the page before (as that page's nextCursor gave it).</summary>
    private static string? ParseCursor(string? text) =>
        string.IsNullOrEmpty(text) ? null
        : text.StartsWith(Identifiers.DevicePrefix, StringComparison.Ordinal) && text.Length <= 64 && text.All(c => char.IsAsciiLetterOrDigit(c) || c == '_') ? text
        : throw ApiException.Invalid($"cursor must be the nextCursor of the page before (a device id, {Identifiers.DevicePrefix}…); got '{QueryParameters.Printable(text)}'");

    private static DeviceStatus? ParseStatus(string? text) => text switch
    {
        null or "" => null,
        "pending" => DeviceStatus.Pending,
        "active" => DeviceStatus.Active,
        _ => throw ApiException.Invalid($"status must be pending or active; got '{QueryParameters.Printable(text)}'"),
    };

    private static Task<IResult> GetDevice(HttpContext http, string tailnet, string device, TailnetRefs refs) =>
        OnDevice(http, tailnet, device, refs, (tailnetId, deviceId) => new GetDevice(tailnetId, deviceId));

    private static Task<IResult> ApproveDevice(HttpContext http, string tailnet, string device, TailnetRefs refs, TimeProvider clock) =>
        OnDevice(http, tailnet, device, refs, (tailnetId, deviceId) => new ApproveDevice(tailnetId, deviceId, clock.GetUtcNow()));

    private static async Task<IResult> RenameDevice(HttpContext http, string tailnet, string device, TailnetRefs refs)
    {
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("name");
        var name = body.RequiredString("name");
        return await OnDevice(http, tailnet, device, refs, (tailnetId, deviceId) => new RenameDevice(tailnetId, deviceId, name));
    }

    private static async Task<IResult> SetTags(HttpContext http, string tailnet, string device, TailnetRefs refs, TimeProvider clock)
    {
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("tags");
        var tags = (body.OptionalStringList("tags") ?? throw ApiException.Invalid("missing required field 'tags' (an array; [] removes every tag)")).ToImmutableArray();
        return await OnDevice(http, tailnet, device, refs, (tailnetId, deviceId) => new SetDeviceTags(tailnetId, deviceId, tags, clock.GetUtcNow()));
    }

    private static async Task<IResult> GetRoutes(HttpContext http, string tailnet, string device, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var deviceId = await ResolveDeviceId(http, refs, entry.TailnetId, device);
        var info = await refs.Tailnets.AskFor<DeviceInfo>(new GetDevice(entry.TailnetId, deviceId), http);
        return Results.Json(RoutesOf(info.Device), AdminJson.Options);
    }

    /// <summary>Sets the approved routes (the whole list, as Tailscale's API does); answers the device's routes after.</summary>
    private static async Task<IResult> ApproveRoutes(HttpContext http, string tailnet, string device, TailnetRefs refs)
    {
        var body = (await JsonRequestBody.ReadAsync(http.Request)).AllowOnly("routes");
        var routes = (body.OptionalStringList("routes") ?? throw ApiException.Invalid("missing required field 'routes' (an array of CIDR prefixes; [] approves none)")).ToImmutableArray();
        var entry = await refs.ResolveAsync(http, tailnet);
        var deviceId = await ResolveDeviceId(http, refs, entry.TailnetId, device);
        var info = await refs.Tailnets.AskFor<DeviceInfo>(new ApproveDeviceRoutes(entry.TailnetId, deviceId, routes), http);
        return Results.Json(RoutesOf(info.Device), AdminJson.Options);
    }

    private static DeviceRoutesResource RoutesOf(DeviceEntry d) => new(d.AdvertisedRoutes, d.ApprovedRoutes, d.EnabledRoutes, d.IsExitNode);

    private static Task<IResult> ExpireDevice(HttpContext http, string tailnet, string device, TailnetRefs refs, TimeProvider clock) =>
        OnDevice(http, tailnet, device, refs, (tailnetId, deviceId) => new ExpireDevice(tailnetId, deviceId, clock.GetUtcNow()));

    private static async Task<IResult> DeleteDevice(HttpContext http, string tailnet, string device, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var deviceId = await ResolveDeviceId(http, refs, entry.TailnetId, device);
        await refs.Tailnets.Remove(new DeleteDevice(entry.TailnetId, deviceId), http);
        return Results.NoContent();
    }

    /// <summary><c>?status=pending</c>: every device waiting for approval, at once (a flood of unwanted keyless registrations).</summary>
    private static async Task<IResult> DeletePendingDevices(HttpContext http, string tailnet, TailnetRefs refs)
    {
        if (http.Request.Query["status"] != "pending")
            throw ApiException.Invalid("only devices waiting for approval are deleted in bulk: add ?status=pending (delete others one at a time)");
        var entry = await refs.ResolveAsync(http, tailnet);
        var pending = (await refs.AllDevicesAsync(http, entry.TailnetId, DeviceStatus.Pending)).Select(d => d.Device.DeviceId).ToList();
        var deleted = await refs.Tailnets.AskFor<PendingDevicesDeleted>(new DeletePendingDevices(entry.TailnetId, pending), http);
        return Results.Json(new DeletedDevicesResource(deleted.DeviceIds), AdminJson.Options);
    }

    /// <summary>The netmap the device would receive now, as protobuf JSON (for debugging).</summary>
    private static async Task<IResult> GetNetMap(HttpContext http, string tailnet, string device, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var deviceId = await ResolveDeviceId(http, refs, entry.TailnetId, device);
        var snapshot = await refs.Tailnets.AskFor<NetMapSnapshot>(new GetNetMap(entry.TailnetId, deviceId), http);
        var json = NetMapJson.Format(NetMap.Parser.ParseFrom(snapshot.NetMap));
        return Results.Text(json, "application/json");
    }

    /// <summary>Where the device's netmap stream stands: its version, the coordinator node holding its agent's session, and the node running its entity.</summary>
    private static async Task<IResult> GetStream(HttpContext http, string tailnet, string device, TailnetRefs refs)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var deviceId = await ResolveDeviceId(http, refs, entry.TailnetId, device);
        await refs.Tailnets.AskFor<DeviceInfo>(new GetDevice(entry.TailnetId, deviceId), http); // in this tailnet, or 404
        var stream = await refs.Devices.AskFor<Devices.DeviceStreamInfo>(new Devices.GetDeviceStream(deviceId), http);
        var coordinator = stream.Session is { } path ? Akka.Actor.ActorPath.Parse(path).Address.ToString() : null;
        return Results.Json(new DeviceStreamResource(stream.Version, coordinator is not null, coordinator, stream.AwaitingFullMap, stream.Node), AdminJson.Options);
    }

    private static async Task<IResult> OnDevice(HttpContext http, string tailnet, string device, TailnetRefs refs, Func<string, string, object> command)
    {
        var entry = await refs.ResolveAsync(http, tailnet);
        var deviceId = await ResolveDeviceId(http, refs, entry.TailnetId, device);
        var info = await refs.Tailnets.AskFor<DeviceInfo>(command(entry.TailnetId, deviceId), http);
        var users = await refs.Tailnets.AskFor<UserList>(new ListUsers(entry.TailnetId), http);
        return Results.Json(ToResource(info, users), AdminJson.Options);
    }

    /// <summary>A device by id (<c>dev_…</c>) or by its MagicDNS name.</summary>
    private static async Task<string> ResolveDeviceId(HttpContext http, TailnetRefs refs, string tailnetId, string idOrName)
    {
        if (idOrName.StartsWith(Identifiers.DevicePrefix, StringComparison.Ordinal)) return idOrName;
        object? answer = null;
        try
        {
            answer = await refs.Tailnets.Ask<object>(new GetDeviceNamed(tailnetId, idOrName), NamedLookupTimeout, http.RequestAborted);
        }
        catch (AskTimeoutException)
        {
        }
        return answer switch
        {
            DeviceInfo info => info.Device.DeviceId,
            Persistence.Rejection rejection => throw ApiException.From(rejection),
            // Unanswered within a few seconds: the tailnet is on a node from before this question (a rolling upgrade), which
            // drops it, or it is moving. Its pages work either way, each asked with the cluster's retries and deadline.
            _ => (await refs.AllDevicesAsync(http, tailnetId)).FirstOrDefault(d => d.Device.Name == idOrName)?.Device.DeviceId
                ?? throw new ApiException(ApiErrorCodes.NotFound, $"device '{idOrName}' does not exist"),
        };
    }

    // ------------------------------------------------------------------ resources

    private static UserResource ToResource(TailnetUser user) => user.FromProvider
        ? new(user.UserId, user.Name, user.CreatedAt, user.Role.Name(), user.Issuer, user.Subject, user.Groups, user.LastSignIn)
        : new(user.UserId, user.Name, user.CreatedAt, user.Role.Name());

    private static string? UserName(UserList users, string? userId) =>
        userId is null ? null : users.Users.FirstOrDefault(u => u.UserId == userId)?.Name ?? userId;

    private static AuthKeyResource ToResource(AuthKey key, UserList users, DateTimeOffset now) =>
        new(key.KeyId, UserName(users, key.UserId), key.Reusable, key.Ephemeral, key.Tags, key.CreatedAt, key.ExpiresAt, key.Description,
            key.Revoked, now >= key.ExpiresAt, key.Uses);

    internal static DeviceResource ToResource(DeviceInfo info, UserList users)
    {
        var d = info.Device;
        return new DeviceResource(
            d.DeviceId, d.Name, d.Hostname, d.Os, d.Status.ToString().ToLowerInvariant(), info.Online, UserName(users, d.UserId), d.Tags,
            d.Ipv4.Length > 0 ? [d.Ipv4, d.Ipv6] : [], d.Endpoints, d.HomeRelay, "nodekey:" + d.NodeKey, "mkey:" + d.MachineKey,
            d.DiscoKey.Length > 0 ? "discokey:" + d.DiscoKey : "", d.KeyExpiry, d.Ephemeral, d.CreatedAt, d.LastSeen, d.AuthKeyId, d.AgentVersion,
            d.RegisteredFrom, RoutesOf(d), d.EndpointsUnknown);
    }
}

/// <summary>The netmap as JSON for people and scripts: protobuf's canonical JSON mapping (keys as base64).</summary>
public static class NetMapJson
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    public static string Format(IMessage message) => Formatter.Format(message);
}
