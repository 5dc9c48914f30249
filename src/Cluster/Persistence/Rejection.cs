using Weft.Contracts.Admin;
using Weft.Cluster.Messaging;

namespace Weft.Cluster.Persistence;

/// <summary>
/// The reply to a command that was refused. Nothing was written. The code is one of
/// <see cref="ApiErrorCodes"/>, so the admin API can pass it through unchanged.
/// </summary>
[WireName("rejection")]
public sealed record Rejection(string Code, string Message) : IClusterMessage
{
    public static Rejection Invalid(string message) => new(ApiErrorCodes.InvalidRequest, message);
    public static Rejection NotFound(string message) => new(ApiErrorCodes.NotFound, message);
    public static Rejection Conflict(string message) => new(ApiErrorCodes.Conflict, message);
    public static Rejection Unavailable(string message) => new(ApiErrorCodes.Unavailable, message);
}
