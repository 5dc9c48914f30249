using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Weft.Cluster.Api;
using Weft.Cluster.Tailnets;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Identity;

/// <summary>
/// Checks a provider before a tailnet is told to use it, as an operator would by hand: its discovery
/// document (<c>/.well-known/openid-configuration</c>, read with the IdentityModel library) answers,
/// names the same issuer, and offers the authorization code flow with PKCE (S256). A typo in the
/// issuer fails here, with the reason, instead of at the first person's sign-in.
/// </summary>
public sealed class ProviderDiscovery(IHttpClientFactory clients, Hosting.WeftSettings settings)
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public async Task CheckAsync(SsoSettings provider, CancellationToken cancellation)
    {
        var issuer = SsoRules.Normalized(provider).Issuer;
        if (new Uri(issuer).IsLoopback && !settings.Api.AllowLoopbackIdentityProviders)
            throw ApiException.Invalid($"issuer '{issuer}' is on this machine's loopback, which this cluster does not allow (Weft:Api:AllowLoopbackIdentityProviders)");
        var address = issuer + "/.well-known/openid-configuration";
        using var http = clients.CreateClient(nameof(ProviderDiscovery));
        http.Timeout = Timeout;
        OpenIdConnectConfiguration document;
        try
        {
            var retriever = new HttpDocumentRetriever(http) { RequireHttps = address.StartsWith("https:", StringComparison.Ordinal) };
            document = await OpenIdConnectConfigurationRetriever.GetAsync(address, retriever, cancellation);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellation.IsCancellationRequested)
        {
            throw ApiException.Invalid($"the provider's discovery document at {address} could not be read: {Innermost(e).Message}");
        }
        if (document.Issuer.TrimEnd('/') != issuer)
            throw ApiException.Invalid($"the provider at {address} calls itself '{document.Issuer}', not '{issuer}': use exactly its issuer");
        if (string.IsNullOrEmpty(document.AuthorizationEndpoint) || string.IsNullOrEmpty(document.TokenEndpoint))
            throw ApiException.Invalid($"the provider at {issuer} names no authorization or token endpoint: Weft signs people in with the authorization code flow");
        if (document.ResponseTypesSupported.Count > 0 && !document.ResponseTypesSupported.Contains("code"))
            throw ApiException.Invalid($"the provider at {issuer} does not offer the authorization code flow (response types: {string.Join(", ", document.ResponseTypesSupported)})");
        if (document.CodeChallengeMethodsSupported.Count > 0 && !document.CodeChallengeMethodsSupported.Contains("S256"))
            throw ApiException.Invalid($"the provider at {issuer} does not offer PKCE with S256 (it offers: {string.Join(", ", document.CodeChallengeMethodsSupported)})");
    }

    private static Exception Innermost(Exception e) => e.InnerException is { } inner ? Innermost(inner) : e;
}
