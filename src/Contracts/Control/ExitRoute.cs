using System.Collections.Immutable;

namespace Weft.Contracts.Control;

/// <summary>What an exit node advertises, as both ends write it: every IPv4 and every IPv6 address.</summary>
public static class ExitRoute
{
    public static readonly ImmutableArray<string> Prefixes = ["0.0.0.0/0", "::/0"];

    public static bool Is(string route) => route is "0.0.0.0/0" or "::/0";
}
