using Weft.Cluster.ApiKeys;
using Weft.Cluster.Persistence;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Tests.ApiKeys;

public class ApiKeyRegistryStateTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void The_first_bootstrap_issues_an_operator_key_and_later_ones_do_not()
    {
        var first = ApiKeyToken.Generate();
        var decision = ApiKeyRegistryState.Empty.Process(new BootstrapOperatorKey(first.KeyId, first.SecretHash, Now));
        var state = decision.Events.Aggregate(ApiKeyRegistryState.Empty, (s, e) => s.Apply(e));

        Assert.True(state.HasOperatorKey);
        var second = ApiKeyToken.Generate();
        Assert.Empty(state.Process(new BootstrapOperatorKey(second.KeyId, second.SecretHash, Now)).Events);
    }

    [Fact]
    public void A_tailnet_holds_a_bounded_number_of_keys_and_others_are_not_affected()
    {
        var state = ApiKeyRegistryState.Empty;
        for (var i = 0; i < ApiKeyRegistryState.MaxKeysPerTailnet; i++)
        {
            var token = ApiKeyToken.Generate();
            var issued = state.Process(new IssueApiKey(token.KeyId, ApiKeyScope.Tailnet, "tn_busy", token.SecretHash, "", Now));
            state = issued.Events.Aggregate(state, (s, e) => s.Apply(e));
        }

        var extra = ApiKeyToken.Generate();
        var refused = state.Process(new IssueApiKey(extra.KeyId, ApiKeyScope.Tailnet, "tn_busy", extra.SecretHash, "", Now));
        Assert.Equal(ApiErrorCodes.Conflict, refused.Rejection!.Code);
        Assert.Contains("revoke one first", refused.Rejection.Message);
        var elsewhere = state.Process(new IssueApiKey(extra.KeyId, ApiKeyScope.Tailnet, "tn_other", extra.SecretHash, "", Now));
        Assert.Single(elsewhere.Events);

        // Revoking one makes room again.
        var revoked = state.Apply(new ApiKeyRevoked(state.Keys.Keys.First()));
        Assert.Single(revoked.Process(new IssueApiKey(extra.KeyId, ApiKeyScope.Tailnet, "tn_busy", extra.SecretHash, "", Now)).Events);
    }

    [Fact]
    public void A_revoked_key_id_is_never_issued_again_under_any_scope_and_a_tailnets_removal_revokes_its_keys_for_good()
    {
        var token = ApiKeyToken.Generate();
        var tenant = ApiKeyToken.Generate();
        var keeper = ApiKeyToken.Generate(); // the last operator key cannot be revoked
        var state = ApiKeyRegistryState.Empty
            .Apply(new ApiKeyIssued(keeper.KeyId, ApiKeyScope.Operator, keeper.SecretHash, Now))
            .Apply(new ApiKeyIssued(token.KeyId, ApiKeyScope.Operator, token.SecretHash, Now))
            .Apply(new ApiKeyIssued(tenant.KeyId, ApiKeyScope.Tailnet, tenant.SecretHash, Now, "tn_gone"));
        state = state.Process(new RevokeApiKey(token.KeyId)).Events.Concat(state.Process(new RevokeTailnetApiKeys("tn_gone")).Events)
            .Aggregate(state, (s, e) => s.Apply(e));

        Assert.Equal([keeper.KeyId], state.Keys.Keys);
        Assert.Equal(new[] { tenant.KeyId, token.KeyId }.Order(StringComparer.Ordinal), state.RevokedKeyIds.Order(StringComparer.Ordinal));
        foreach (var (id, hash) in new[] { (token.KeyId, token.SecretHash), (tenant.KeyId, tenant.SecretHash) })
        {
            var asOperator = state.Process(new IssueApiKey(id, ApiKeyScope.Operator, null, hash, "", Now));
            Assert.Equal(ApiErrorCodes.Conflict, asOperator.Rejection?.Code);
            Assert.Empty(asOperator.Events);
            Assert.Equal(ApiErrorCodes.Conflict, state.Process(new IssueApiKey(id, ApiKeyScope.Tailnet, "tn_other", hash, "", Now)).Rejection?.Code);
            Assert.IsType<Rejection>(state.Verify(new VerifyApiKey(id, hash)));
        }
    }

    [Fact]
    public void Only_the_right_secret_verifies()
    {
        var token = ApiKeyToken.Generate();
        var state = ApiKeyRegistryState.Empty.Apply(new ApiKeyIssued(token.KeyId, ApiKeyScope.Operator, token.SecretHash, Now));

        Assert.Equal(new ApiKeyVerified(token.KeyId, ApiKeyScope.Operator, null), state.Verify(new VerifyApiKey(token.KeyId, token.SecretHash)));
        var wrong = Assert.IsType<Rejection>(state.Verify(new VerifyApiKey(token.KeyId, ApiKeyToken.Hash("guess"))));
        Assert.Equal(ApiErrorCodes.Unauthorized, wrong.Code);
        Assert.IsType<Rejection>(state.Verify(new VerifyApiKey("unknownid0", token.SecretHash)));
    }

    [Fact]
    public void Tokens_round_trip_through_their_text_form()
    {
        var token = ApiKeyToken.Generate();

        Assert.True(ApiKeyToken.TryParse(token.ToString(), out var parsed));
        Assert.Equal(token, parsed);
        Assert.StartsWith("weft_", token.ToString());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("Bearer weft_abc")]
    [InlineData("weft_short_secret")]
    [InlineData("weft_abcdefghij_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")]
    [InlineData("weft_abcdefghij_abcdefghijklmnopqrstuvwxyz234567_extra")]
    [InlineData("weft_abcdefgh1j_abcdefghijklmnopqrstuvwxyz234567")]
    public void Malformed_tokens_do_not_parse(string? text)
    {
        Assert.False(ApiKeyToken.TryParse(text, out _));
    }

    [Fact]
    public void Only_the_hash_of_the_secret_is_stored()
    {
        var token = ApiKeyToken.Generate();

        Assert.DoesNotContain(token.Secret, token.SecretHash);
        Assert.Equal(64, token.SecretHash.Length);
    }
}
