namespace Weft.Lab;

/// <summary>Two machines on one underlay link (198.18.0.1 and .2), each running a WireGuard, peered with each other.</summary>
public sealed record WireGuardPair(Lab Lab, WgInterface A, WgInterface B)
{
    public const string UnderlayA = "198.18.0.1";
    public const string UnderlayB = "198.18.0.2";

    public static WireGuardPair Start(Lab lab, WgImplementation a, WgImplementation b, string? pskA = null, string? pskB = null,
        string[]? agentArgumentsA = null, string[]? agentArgumentsB = null)
    {
        var nsA = lab.AddNamespace("a");
        var nsB = lab.AddNamespace("b");
        lab.Connect(nsA, UnderlayA + "/24", nsB, UnderlayB + "/24");
        var idA = WgIdentity.Generate();
        var idB = WgIdentity.Generate();
        var wgA = WgInterface.Start(a, nsA, lab.Id + "wa", idA, 51820, "100.64.0.1/32",
            [new WgPeer(idB.PublicKey, "100.64.0.2/32", $"{UnderlayB}:51821", pskA)], agentArgumentsA ?? []);
        var wgB = WgInterface.Start(b, nsB, lab.Id + "wb", idB, 51821, "100.64.0.2/32",
            [new WgPeer(idA.PublicKey, "100.64.0.1/32", $"{UnderlayA}:51820", pskB)], agentArgumentsB ?? []);
        return new WireGuardPair(lab, wgA, wgB);
    }
}
