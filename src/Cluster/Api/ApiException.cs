using Weft.Cluster.Persistence;
using Weft.Contracts.Admin;

namespace Weft.Cluster.Api;

/// <summary>Ends a request with an <see cref="ApiError"/>; the status follows from the code.</summary>
public sealed class ApiException(string code, string message, IReadOnlyList<ApiIssue>? issues = null) : Exception(message)
{
    public string Code { get; } = code;

    public IReadOnlyList<ApiIssue>? Issues { get; } = issues;

    public static ApiException From(Rejection rejection) => new(rejection.Code, rejection.Message);

    public static ApiException Invalid(string message) => new(ApiErrorCodes.InvalidRequest, message);
}
