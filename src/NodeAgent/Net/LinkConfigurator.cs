using System.Diagnostics;
using Weft.NodeAgent.Standalone;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Net;

/// <summary>
/// Gives a TUN interface its addresses, MTU and routes, as wg-quick does, through iproute2's
/// <c>ip</c>. Routes go to the interface for every allowed IP except default routes, which would
/// need wg-quick's policy-routing tricks.
/// </summary>
public static class LinkConfigurator
{
    public static void Up(string interfaceName, int mtu, IEnumerable<InterfaceAddress> addresses, IEnumerable<IpPrefix> routes)
    {
        Ip("link", "set", "dev", interfaceName, "mtu", mtu.ToString(), "up");
        foreach (var address in addresses)
            Ip(address.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "-6" : "-4",
                "address", "add", address.ToString(), "dev", interfaceName);
        foreach (var route in routes.Where(r => r.Length > 0).Distinct())
            Ip(route.IsIPv4 ? "-4" : "-6", "route", "replace", route.ToString(), "dev", interfaceName);
    }

    /// <summary>Runs <c>ip</c> with the given arguments; a failure is an exception carrying ip's own message.</summary>
    public static void Ip(params string[] arguments)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        using var process = Process.Start(info) ?? throw new IOException("cannot run ip (is iproute2 installed?)");
        var error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new IOException($"ip {string.Join(' ', arguments)}: {error.Trim()}");
    }
}
