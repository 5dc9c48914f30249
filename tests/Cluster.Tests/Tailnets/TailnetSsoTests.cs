using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;

using static Weft.Cluster.Tests.Tailnets.TailnetDecisions;

namespace Weft.Cluster.Tests.Tailnets;

/// <summary>A tailnet's identity provider: what an admin may set, how it is stored, and that its secret never shows.</summary>
public class TailnetSsoTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    private static TailnetState Active() =>
        TailnetState.Unborn("tn_acme").Apply(new TailnetCreated(TailnetRules.DefaultSettings("acme"), Now));

    private static SsoSettings Provider(string issuer = "https://id.example.com", string clientId = "weft", string secret = "s3cret-value",
        string[]? domains = null, string[]? groups = null, string groupsClaim = "", string[]? scopes = null) =>
        new(issuer, clientId, secret, [.. domains ?? []], [.. groups ?? []], groupsClaim, [.. scopes ?? []]);

    [Fact]
    public void A_provider_is_stored_normalised_replaced_and_removed()
    {
        var state = Run(Active(), new SetSso("tn_acme", Provider("https://id.example.com/", domains: ["Example.COM", "example.com", "corp.example"], scopes: ["email", "groups"])));

        var sso = Assert.IsType<SsoSettings>(state.Sso);
        Assert.Equal("https://id.example.com", sso.Issuer);
        Assert.Equal<string>(["corp.example", "example.com"], sso.AllowedDomains);
        Assert.Equal<string>(["openid", "email", "groups"], sso.Scopes);
        Assert.Equal(SsoSettings.DefaultGroupsClaim, sso.GroupsClaim);

        // The same settings again: nothing to store. New ones replace them.
        Assert.Empty(state.Process(new SetSso("tn_acme", sso)).Events);
        state = Run(state, new SetSso("tn_acme", Provider(clientId: "weft-2")));
        Assert.Equal("weft-2", state.Sso!.ClientId);
        Assert.Equal<string>(SsoSettings.DefaultScopes, state.Sso.Scopes);

        state = Run(state, new RemoveSso("tn_acme"));
        Assert.Null(state.Sso);
        Assert.Empty(state.Process(new RemoveSso("tn_acme")).Events); // removing twice changes nothing
    }

    [Theory]
    [InlineData("", "weft", "secret", "example.com", "issuer is required")]
    [InlineData("http://id.example.com", "weft", "secret", "example.com", "must use https")]
    [InlineData("ftp://id.example.com", "weft", "secret", "example.com", "not an absolute https URL")]
    [InlineData("https://id.example.com/?tenant=1", "weft", "secret", "example.com", "must not carry a query")]
    [InlineData("https://id.example.com", "", "secret", "example.com", "clientId is required")]
    [InlineData("https://id.example.com", "weft", "", "example.com", "clientSecret is required")]
    [InlineData("https://id.example.com", "weft", "sec\nret", "example.com", "clientSecret contains control characters")]
    [InlineData("https://id.example.com", "weft", "secret", "@example.com", "is not a domain name")]
    [InlineData("https://id.example.com", "weft", "secret", "localhost", "is not a domain name")]
    public void Bad_settings_are_refused_with_the_reason_and_store_nothing(string issuer, string clientId, string secret, string domain, string expected)
    {
        var refused = Refused(Active(), new SetSso("tn_acme", Provider(issuer, clientId, secret, domains: [domain])));

        Assert.Equal("invalid_request", refused.Code);
        Assert.Contains(expected, refused.Message);
    }

    [Fact]
    public void Plain_http_is_allowed_only_to_a_provider_on_loopback()
    {
        Assert.NotNull(Run(Active(), new SetSso("tn_acme", Provider("http://127.0.0.1:9000"))).Sso);
        Assert.NotNull(Run(Active(), new SetSso("tn_acme", Provider("http://[::1]:9000"))).Sso);
        Assert.Contains("must use https", Refused(Active(), new SetSso("tn_acme", Provider("http://198.18.0.1:9000"))).Message);
    }

    [Fact]
    public void Bad_scopes_and_claim_names_are_refused()
    {
        Assert.Contains("is not a scope", Refused(Active(), new SetSso("tn_acme", Provider(scopes: ["email profile"]))).Message);
        Assert.Contains("is not a claim name", Refused(Active(), new SetSso("tn_acme", Provider(groupsClaim: "groups claim"))).Message);
        Assert.Contains("at most 100", Refused(Active(), new SetSso("tn_acme", Provider(groups: [.. Enumerable.Range(0, 101).Select(i => $"g{i}")]))).Message);
    }

    [Fact]
    public void The_client_secret_never_appears_in_a_printed_message_or_event()
    {
        var set = new SetSso("tn_acme", Provider(secret: "do-not-print-me"));
        var configured = Assert.IsType<SsoConfigured>(Assert.Single(Active().Process(set).Events));

        foreach (var text in new[] { set.ToString(), configured.ToString(), configured.Settings.ToString(), new SsoInfo("tn_acme", configured.Settings).ToString() })
        {
            Assert.DoesNotContain("do-not-print-me", text);
            Assert.Contains("(secret)", text);
        }
    }

    [Fact]
    public void A_deleted_tailnet_takes_no_provider()
    {
        var deleted = Active().Apply(new TailnetDeleted(Now));
        Assert.Equal("not_found", Refused(deleted, new SetSso("tn_acme", Provider())).Code);
    }
}
