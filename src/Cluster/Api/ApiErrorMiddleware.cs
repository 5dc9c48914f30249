using Microsoft.AspNetCore.Http;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>Turns every failure of an admin request into a JSON <see cref="ApiError"/>. Nothing else escapes.</summary>
public sealed class ApiErrorMiddleware(RequestDelegate next, ILogger<ApiErrorMiddleware> log)
{
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (ApiException e)
        {
            await WriteAsync(context, e.Code, e.Message, e.Issues);
        }
        catch (BadHttpRequestException e)
        {
            var code = e.StatusCode == StatusCodes.Status413PayloadTooLarge ? ApiErrorCodes.PayloadTooLarge : ApiErrorCodes.InvalidRequest;
            await WriteAsync(context, code, e.Message);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; there is nobody to answer.
        }
        catch (Exception e)
        {
            log.LogError(e, "Admin request {Method} {Path} failed", context.Request.Method, context.Request.Path);
            await WriteAsync(context, ApiErrorCodes.Internal, "internal error; see the coordinator log");
        }
    }

    public static async Task WriteAsync(HttpContext context, string code, string message, IReadOnlyList<ApiIssue>? issues = null, int? retryAfterSeconds = null)
    {
        if (context.Response.HasStarted) return;
        context.Response.Clear();
        context.Response.StatusCode = ApiErrorCodes.HttpStatusOf(code);
        // The cluster is handing over or its store is away: worth trying again shortly (a creation with the same Idempotency-Key).
        if (retryAfterSeconds is { } seconds) context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        else if (code == ApiErrorCodes.Unavailable) context.Response.Headers.RetryAfter = "2";
        await context.Response.WriteAsJsonAsync(new ApiError(code, message, issues), AdminJson.Options);
    }
}
