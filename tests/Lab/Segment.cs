namespace Weft.Lab;

/// <summary>
/// One shared underlay link (a "switch"): a namespace holding a bridge, with machines attached by
/// veth pairs. All addresses are in 198.18.0.0/24. The host (root namespace) may attach too, so
/// that a process there (the coordinator) is reachable from the machines; its end disappears with
/// the switch namespace.
/// </summary>
public sealed class Segment
{
    private const string Bridge = "br0";
    private readonly Namespace _switch;
    private int _ports;

    private Segment(Namespace switchNamespace) => _switch = switchNamespace;

    public static Segment Create(Lab lab)
    {
        var ns = lab.AddNamespace("sw");
        ns.Run("ip", "link", "add", Bridge, "type", "bridge");
        ns.Run("ip", "link", "set", Bridge, "up");
        return new Segment(ns);
    }

    /// <summary>Attaches a machine with an address (CIDR form, e.g. 198.18.0.2/24); returns its interface name there.</summary>
    public string Attach(Namespace machine, string address) => AttachEnd(machine.Name, address, n => machine.Run(n));

    /// <summary>Attaches the root namespace (where the test and the coordinator run).</summary>
    public string AttachHost(string address) => AttachEnd(null, address, n => Lab.Run(n));

    private string AttachEnd(string? ns, string address, Action<string[]> runThere)
    {
        var index = Interlocked.Increment(ref _ports);
        var outside = $"{_switch.Lab.Id}p{index}";
        var inside = $"{_switch.Lab.Id}s{index}";
        var command = new List<string> { "ip", "link", "add", outside };
        if (ns is not null) command.AddRange(["netns", ns]);
        command.AddRange(["type", "veth", "peer", "name", inside, "netns", _switch.Name]);
        Lab.Run([.. command]);
        _switch.Run("ip", "link", "set", inside, "master", Bridge);
        _switch.Run("ip", "link", "set", inside, "up");
        runThere(["ip", "address", "add", address, "dev", outside]);
        runThere(["ip", "link", "set", outside, "up"]);
        return outside;
    }
}
