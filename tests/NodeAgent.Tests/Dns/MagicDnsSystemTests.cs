using System.Collections.Immutable;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Weft.Contracts.Control;
using Weft.NodeAgent.Agent;
using Weft.NodeAgent.Control;
using Weft.NodeAgent.Dns;
using Weft.NodeAgent.Tests.Support;
using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.Dns;

/// <summary>
/// MagicDNS tells the system's resolver off its caller's thread: the data plane, which calls it from
/// its mailbox, never waits on resolvectl or a file. MagicDNS answers on a real loopback socket, on
/// port 53 (the only port resolv.conf can name, so the only one for which the system is told), at an
/// address of 127/8 of its own so that nothing else listening is in the way; binding it needs root.
/// </summary>
public sealed class MagicDnsSystemTests
{
    private static readonly ImmutableArray<IpPrefix> Loopback = [IpPrefix.Parse("127.83.29.1/32")];

    private static NetMapView ViewWithSuffix(string suffix) => NetMapView.Empty with
    {
        Self = new Node { Id = "self", Name = "self", Fqdn = $"self.{suffix}.", Addresses = { "127.83.29.1/32" } },
    };

    /// <summary>A system resolver whose Apply waits until the test lets it go.</summary>
    private sealed class HeldResolver : ISystemResolver
    {
        public readonly ManualResetEventSlim Release = new();
        public readonly List<string> Calls = [];

        public SystemDnsStatus Status => new("test", "held", null, [], [], null, null);

        public IReadOnlyList<IPEndPoint> Upstreams => [new IPEndPoint(IPAddress.Parse("198.18.0.53"), 53)];

        public void Apply(IPAddress nameserver, string suffix)
        {
            Release.Wait();
            lock (Calls) Calls.Add($"apply {nameserver} {suffix}");
        }

        public void Recheck()
        {
            lock (Calls) Calls.Add("recheck");
        }

        public void Restore()
        {
            lock (Calls) Calls.Add("restore");
        }
    }

    [SkippableFact]
    public async Task A_slow_system_resolver_does_not_hold_up_the_netmap_and_each_change_is_told_once_in_order()
    {
        Prerequisite.RequireRoot("binds port 53 on loopback");
        var held = new HeldResolver();
        using var dns = new MagicDns(53, NullLogger.Instance, held);

        // Returns while the resolver is still held: the caller never waits for it.
        var update = Task.Run(() => dns.Update(ViewWithSuffix("acme.weft.internal"), Loopback));
        await update.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(dns.Settled.IsCompleted);
        Assert.True(dns.WantsSystem);
        dns.Update(ViewWithSuffix("acme.weft.internal"), Loopback); // the same netmap again: nothing new to tell
        dns.Update(null, []);                                        // down

        held.Release.Set();
        await dns.Settled;

        Assert.Equal(["apply 127.83.29.1 acme.weft.internal", "restore"], held.Calls);
        Assert.False(dns.WantsSystem);
    }
}
