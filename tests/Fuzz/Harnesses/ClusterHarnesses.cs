using System.Collections.Immutable;
using Microsoft.AspNetCore.Http;
using Weft.Cluster.Api;
using Weft.Cluster.ApiKeys;
using Weft.Cluster.Policy;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Keys;
using Weft.Fuzz.Engine;

namespace Weft.Fuzz.Harnesses;

/// <summary>HuJSON (JSON with comments and trailing commas), as a tenant admin pastes it.</summary>
public sealed class HuJsonHarness : Harness
{
    public override string Name => "hujson";

    public override IReadOnlyList<byte[]> Tokens => PolicyHarness.PolicyTokens;

    public override IEnumerable<byte[]> Seeds() => PolicyHarness.PolicySeeds();

    public override string Run(byte[] input)
    {
        try
        {
            return "parsed:" + HuJson.Parse(Text(input)).Kind;
        }
        catch (HuJsonException e)
        {
            return Refused(e);
        }
    }
}

/// <summary>
/// A whole policy as the tailnet takes it: parsed, checked, compiled against a small tailnet, its
/// tests run within their budget, and then a device joining, changing and leaving under it.
/// </summary>
public sealed class PolicyHarness : Harness
{
    private static readonly TailnetPolicy DefaultPolicy = PolicyParser.Parse(TailnetPolicy.DefaultText).Policy!;

    private static readonly ImmutableArray<PolicyDevice> Devices =
    [
        new("dev_a", "alice@example.com", [], "100.64.0.1", "fd7a:115c:a1e0::1"),
        new("dev_b", "bob@example.com", [], "100.64.0.2", "fd7a:115c:a1e0::2"),
        new("dev_db", null, ["tag:db"], "100.64.0.3", "fd7a:115c:a1e0::3"),
        new("dev_web", null, ["tag:web", "tag:prod"], "100.64.0.4", "fd7a:115c:a1e0::4"),
        new("dev_router", null, ["tag:router"], "100.64.0.5", "fd7a:115c:a1e0::5", [System.Net.IPNetwork.Parse("198.18.40.0/24")]),
        new("dev_exit", null, ["tag:exit"], "100.64.0.6", "fd7a:115c:a1e0::6", [], ExitNode: true),
    ];

    internal static readonly IReadOnlyList<byte[]> PolicyTokens = Words("{", "}", "[", "]", ",", ":", "\"", "//", "/*", "*/", "\n", "true", "null", "\\u0000", "\\ud800",
        "\"acls\"", "\"action\"", "\"accept\"", "\"src\"", "\"dst\"", "\"proto\"", "\"groups\"", "\"tagOwners\"", "\"hosts\"", "\"tests\"", "\"deny\"",
        "\"*\"", "\"*:*\"", "\"tag:db\"", "\"group:eng\"", "\"autogroup:member\"", "\"autogroup:self:*\"", "\"autogroup:tagged\"", "\"alice@example.com\"",
        "\"100.64.0.0/10:22\"", "\"[fd7a:115c:a1e0::1]:443\"", "\"tag:db:5432,8000-9000\"", "\"tcp\"", "\"udp\"", "\"icmp\"", "\"17\"", ":0-65535", "/0", "/129",
        "\"grants\"", "\"ip\"", "\"tcp:443\"", "\"icmp:*\"", "\"autoApprovers\"", "\"routes\"", "\"exitNode\"", "\"autogroup:internet\"",
        "\"198.18.40.0/24\"", "\"100.64.1\"", "\"0x0a.0.0.1\"", "\"::ffff:1.2.3.4\"", "\"tag:router\"");

    internal static IEnumerable<byte[]> PolicySeeds()
    {
        yield return Utf8(TailnetPolicy.DefaultText);
        yield return Utf8("""
            // a typical tailnet
            {
              "groups": { "group:eng": ["alice@example.com", "bob@example.com"] },
              "tagOwners": { "tag:db": ["group:eng"], "tag:web": ["alice@example.com"] },
              "hosts": { "backup": "100.64.9.9", "lan6": "fd7a:115c:a1e0::/64" },
              "acls": [
                { "action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432", "tag:web:80,443"] },
                { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"] },
                { "action": "accept", "src": ["tag:web"], "proto": "tcp", "dst": ["tag:db:5432", "backup:22", "lan6:1000-2000"] },
                { "action": "accept", "src": ["100.64.0.0/10"], "proto": "icmp", "dst": ["*:*"] },
              ],
              "tests": [
                { "src": "alice@example.com", "accept": ["tag:db:5432"], "deny": ["tag:db:22"] },
                { "src": "tag:web", "proto": "tcp", "accept": ["100.64.0.3:5432"] },
              ],
            }
            """);
        yield return Utf8("""
            // routes, exit nodes and grants
            {
              "tagOwners": { "tag:router": [], "tag:exit": [], "tag:db": [] },
              "autoApprovers": { "routes": { "198.18.0.0/15": ["tag:router"] }, "exitNode": ["tag:exit"] },
              "grants": [
                { "src": ["alice@example.com"], "dst": ["198.18.40.0/24", "autogroup:internet"], "ip": ["*"] },
                { "src": ["198.18.40.0/24"], "dst": ["tag:db"], "ip": ["tcp:5432", "icmp:*"] },
              ],
              "acls": [ { "action": "accept", "src": ["bob@example.com"], "dst": ["198.18.40.0/25:22", "*:80"] } ],
            }
            """);
    }

    public override string Name => "policy";

    public override int MaxInputBytes => 256 * 1024;

    public override IReadOnlyList<byte[]> Tokens => PolicyTokens;

    public override IEnumerable<byte[]> Seeds() => PolicySeeds();

    public override string Run(byte[] input)
    {
        var parsed = PolicyParser.Parse(Text(input));
        if (parsed.Policy is not { } policy) return "refused:" + Shorten(parsed.Issues.FirstOrDefault()?.Message ?? "no issue given");
        var failures = PolicyChecks.RunTests(policy, Devices);
        var engine = PolicyEngine.Compile(policy, Devices);
        var visible = Devices.Sum(d => engine.VisibleCount(d.DeviceId));
        var filters = Devices.Sum(d => engine.FilterOf(d.DeviceId).Length);
        engine.Upsert(new PolicyDevice("dev_new", "carol@example.com", ["tag:db"], "100.64.0.9", "fd7a:115c:a1e0::9"));
        engine.Upsert(Devices[1] with { Tags = ["tag:web"] });
        engine.Remove("dev_a");
        engine.Upsert(Devices[4] with { Routes = [System.Net.IPNetwork.Parse("198.18.41.0/24")], ExitNode = true }); // a route approved, an exit node approved
        var approvals = Devices.Count(d => policy.AutoApprovers.ApprovesExitNode(d.Principal) || policy.AutoApprovers.ApprovesRoute(System.Net.IPNetwork.Parse("198.18.40.0/24"), d.Principal));
        engine.ChangePolicy(DefaultPolicy);
        return $"compiled:{parsed.Issues.Length > 0}:{failures.Length > 0}:{visible > 0}:{filters > 0}:{approvals > 0}";
    }
}

/// <summary>
/// Admin API request bodies, read as the endpoints read them: the strict JSON reader, then the
/// fields and rules of creating an auth key and creating a tailnet.
/// </summary>
public sealed class ApiBodyHarness : Harness
{
    public override string Name => "api-body";

    public override int MaxInputBytes => JsonRequestBody.DefaultMaxBytes + 1024;

    public override IReadOnlyList<byte[]> Tokens => Words("{", "}", "[", "]", ",", ":", "\"", "null", "true", "false", "-0", "1e400", "2147483648", "\\ud800", "\\u0000",
        "\"reusable\"", "\"ephemeral\"", "\"tags\"", "\"expirySeconds\"", "\"user\"", "\"description\"", "\"name\"", "\"nodeKeyExpiryDays\"", "\"dnsSuffix\"",
        "\"ephemeralTimeoutSeconds\"", "\"tag:db\"", "\"acme\"", "\"acme.weft.internal\"", "\"routes\"", "\"0.0.0.0/0\"", "\"::/0\"", "\"100.64.0.0/16\"");

    public override IEnumerable<byte[]> Seeds()
    {
        yield return Utf8("""{"reusable":true,"ephemeral":false,"tags":["tag:db"],"expirySeconds":3600,"user":"alice@example.com","description":"ci runners"}""");
        yield return Utf8("""{"routes":["198.18.40.0/24","0.0.0.0/0","::/0","2001:db8::/32"]}""");
        yield return Utf8("""{"name":"acme","nodeKeyExpiryDays":180,"dnsSuffix":"acme.weft.internal","ephemeralTimeoutSeconds":300}""");
        yield return [0xef, 0xbb, 0xbf, (byte)'{', (byte)'}'];
    }

    public override string Run(byte[] input)
    {
        var context = new DefaultHttpContext();
        context.Request.ContentType = "application/json";
        context.Request.Body = new MemoryStream(input);
        try
        {
            var body = JsonRequestBody.ReadAsync(context.Request).GetAwaiter().GetResult();
            return input.AsSpan().IndexOf("\"name\""u8) >= 0 ? CreateTailnet(body)
                : input.AsSpan().IndexOf("\"routes\""u8) >= 0 ? ApproveRoutes(body)
                : CreateAuthKey(body);
        }
        catch (ApiException e)
        {
            return "refused:" + e.Code + ":" + Shorten(e.Message);
        }
    }

    private static string CreateAuthKey(JsonRequestBody body)
    {
        body.AllowOnly("reusable", "ephemeral", "tags", "expirySeconds", "user", "description");
        var rejection = TailnetRules.CheckTags(body.OptionalStringList("tags") ?? []);
        _ = (body.OptionalBool("reusable"), body.OptionalBool("ephemeral"), body.OptionalInt("expirySeconds"), body.OptionalString("user"), body.OptionalString("description"));
        return rejection is null ? "auth-key" : "refused:" + rejection.Code;
    }

    private static string ApproveRoutes(JsonRequestBody body)
    {
        body.AllowOnly("routes");
        var rejection = DeviceRoutes.Check(body.OptionalStringList("routes") ?? [], out var routes);
        return rejection is null ? $"routes:{routes.Length}" : "refused:" + rejection.Code;
    }

    private static string CreateTailnet(JsonRequestBody body)
    {
        body.AllowOnly("name", "nodeKeyExpiryDays", "dnsSuffix", "ephemeralTimeoutSeconds");
        var rejection = TailnetRules.CheckName(body.RequiredString("name"))
            ?? (body.OptionalInt("nodeKeyExpiryDays") is { } days ? TailnetRules.CheckNodeKeyExpiryDays(days) : null)
            ?? TailnetRules.CheckDnsSuffix(body.OptionalString("dnsSuffix"))
            ?? (body.OptionalInt("ephemeralTimeoutSeconds") is { } seconds ? TailnetRules.CheckEphemeralTimeout(seconds) : null);
        return rejection is null ? "tailnet" : "refused:" + rejection.Code;
    }
}

/// <summary>Every credential and key string a client presents: API keys, auth keys, node, machine and disco keys.</summary>
public sealed class TokenHarness : Harness
{
    public override string Name => "tokens";

    public override int MaxInputBytes => 1024;

    public override IReadOnlyList<byte[]> Tokens => Words("weft_", "weft-auth.", "nodekey:", "mkey:", "discokey:", ".", "tn_", "0123456789abcdef");

    public override IEnumerable<byte[]> Seeds()
    {
        yield return Utf8(ApiKeyToken.Generate().ToString());
        yield return Utf8(AuthKeyToken.Generate("tn_abcdefghijkl").ToString());
        yield return Utf8("nodekey:" + Curve25519PrivateKey.Generate().PublicKey.ToHex());
        yield return Utf8("mkey:" + Curve25519PrivateKey.Generate().PublicKey.ToHex());
    }

    public override string Run(byte[] input)
    {
        var text = Text(input);
        return string.Join(":",
            ApiKeyToken.TryParse(text, out _), AuthKeyToken.TryParse(text, out _), NodeKey.TryParse(text, out _),
            MachineKey.TryParse(text, out _), DiscoKey.TryParse(text, out _), Curve25519PublicKey.TryParseHex(text, out _));
    }
}
