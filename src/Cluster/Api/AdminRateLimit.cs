using System.Net;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>
/// A token bucket per client address on the admin listener (ASP.NET Core's rate limiter): one
/// client, authenticated or not, cannot take the API from everyone else. A refused request gets 429
/// <c>rate_limited</c> with <c>Retry-After</c>, before any key is checked.
/// </summary>
public static class AdminRateLimit
{
    public static IServiceCollection AddPerAddressRateLimit(this IServiceCollection services, double perSecond) => services.AddRateLimiter(options =>
    {
        options.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, IPAddress>(http =>
        {
            var source = http.Connection.RemoteIpAddress is { } remote ? Hosting.ConnectionLimiter.SourceOf(remote) : IPAddress.None;
            // The control listener has its own admission (ControlAdmission); this limit is for the admin listener's requests.
            if (perSecond <= 0 || http.Request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true)
                return RateLimitPartition.GetNoLimiter(IPAddress.None);
            return RateLimitPartition.GetTokenBucketLimiter(source, _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = Math.Max(1, (int)Math.Ceiling(perSecond * 2)),
                TokensPerPeriod = Math.Max(1, (int)Math.Ceiling(perSecond)),
                ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                QueueLimit = 0,
                AutoReplenishment = true,
            });
        });
        options.OnRejected = async (context, cancel) =>
        {
            var seconds = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? Math.Max(1, (int)Math.Ceiling(after.TotalSeconds)) : 1;
            await ApiErrorMiddleware.WriteAsync(context.HttpContext, ApiErrorCodes.RateLimited, $"too many requests from this address; retry after {seconds} s",
                retryAfterSeconds: seconds);
        };
    });
}
