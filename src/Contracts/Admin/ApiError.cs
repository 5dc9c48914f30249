namespace Weft.Contracts.Admin;

/// <summary>Every admin API failure has this body, with an HTTP status that matches the code.</summary>
/// <param name="Issues">For a refused policy: every problem, with its location.</param>
public sealed record ApiError(string Code, string Message, IReadOnlyList<ApiIssue>? Issues = null);

/// <summary>One problem in a submitted document (a policy): 1-based line and column, the JSON path, and what is wrong.</summary>
public sealed record ApiIssue(int Line, int Column, string Path, string Message);

/// <summary>The error codes of the admin API, and the HTTP status each one travels with.</summary>
public static class ApiErrorCodes
{
    public const string InvalidRequest = "invalid_request";   // 400: a field is missing, mistyped or out of range
    public const string PolicyInvalid = "policy_invalid";     // 400: a policy that does not parse, names what does not exist, or fails its tests
    public const string MalformedJson = "malformed_json";     // 400: the body is not JSON
    public const string Unauthorized = "unauthorized";        // 401: no key, or a key we do not know
    public const string Forbidden = "forbidden";              // 403: the key is valid but its scope does not allow this
    public const string NotFound = "not_found";               // 404: no such resource (or not visible to this key)
    public const string Conflict = "conflict";                // 409: e.g. a tailnet name already taken
    public const string PayloadTooLarge = "payload_too_large";// 413
    public const string UnsupportedMediaType = "unsupported_media_type"; // 415
    public const string RateLimited = "rate_limited";         // 429: too many requests from this address; see Retry-After
    public const string Unavailable = "unavailable";          // 503: the cluster could not answer in time
    public const string Internal = "internal";                // 500

    public static int HttpStatusOf(string code) => code switch
    {
        InvalidRequest or MalformedJson or PolicyInvalid => 400,
        Unauthorized => 401,
        Forbidden => 403,
        NotFound => 404,
        Conflict => 409,
        PayloadTooLarge => 413,
        UnsupportedMediaType => 415,
        RateLimited => 429,
        Unavailable => 503,
        _ => 500,
    };
}
