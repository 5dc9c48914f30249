using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// Token buckets on the admin listener (ASP.NET Core's rate limiter), one per client address and one
/// per API key named in the request: one client, authenticated or not, cannot take the API from
/// everyone else, and one key cannot do it from many addresses (a key is counted as presented, before
/// it is verified, by its id and its secret: a forged one, even under a real key's id (ids show in audit
/// logs), only gets a bucket of its own and cannot empty the real key's). A refused request gets 429
/// <c>rate_limited</c> with <c>Retry-After</c>, before any key is checked. The control listener's
/// streams never come this far (CoordinatorHost sends them straight to their endpoint); they have
/// their own admission (ControlAdmission).
/// </summary>
public static class AdminRateLimit
{
    public static IServiceCollection AddAdminRateLimit(this IServiceCollection services, Hosting.ApiSettings settings) => services.AddRateLimiter(options =>
    {
        options.GlobalLimiter = PartitionedRateLimiter.CreateChained(
            PartitionedRateLimiter.Create<HttpContext, string>(http =>
                http.Connection.RemoteIpAddress is { } remote
                    ? Bucket("address " + Weft.Relay.HeldPerAddress.SenderOf(remote), settings.RequestsPerSecondPerAddress)
                    : RateLimitPartition.GetNoLimiter("")),
            PartitionedRateLimiter.Create<HttpContext, string>(http =>
                ApiKeyAuthentication.TryReadPresentedKey(http.Request, out var presented)
                    ? Bucket("key " + presented.KeyId + " " + presented.SecretHash[..16], settings.RequestsPerSecondPerKey)
                    : RateLimitPartition.GetNoLimiter("")));
        options.OnRejected = async (context, cancel) =>
        {
            var seconds = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? Math.Max(1, (int)Math.Ceiling(after.TotalSeconds)) : 1;
            await ApiErrorMiddleware.WriteAsync(context.HttpContext, ApiErrorCodes.RateLimited, $"too many requests from this address or with this key; retry after {seconds} s",
                retryAfterSeconds: seconds);
        };
    });

    private static RateLimitPartition<string> Bucket(string partition, double perSecond) => perSecond <= 0
        ? RateLimitPartition.GetNoLimiter(partition)
        : RateLimitPartition.GetTokenBucketLimiter(partition, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = Math.Max(1, (int)Math.Ceiling(perSecond * 2)),
            TokensPerPeriod = Math.Max(1, (int)Math.Ceiling(perSecond)),
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
            AutoReplenishment = true,
        });
}
