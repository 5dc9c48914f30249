using System.Net;
using Weft.Fuzz.Engine;
using Weft.NodeAgent.Dns;
using Weft.NodeAgent.Standalone;

namespace Weft.Fuzz.Harnesses;

/// <summary>A wg-quick configuration file, as <c>weft-agent standalone --config</c> reads it.</summary>
public sealed class WgQuickConfigHarness : Harness
{
    /// <summary>Names resolve here, never on the network: one known name, every other unknown.</summary>
    private static IPAddress[] OfflineResolver(string host) => host == "peer.example" ? [IPAddress.Parse("198.18.0.9")] : [];

    public override string Name => "wg-quick";

    public override IReadOnlyList<byte[]> Tokens => Words("[Interface]", "[Peer]", "PrivateKey = ", "PublicKey = ", "PresharedKey = ", "Address = ", "ListenPort = ",
        "MTU = ", "FwMark = ", "Endpoint = ", "AllowedIPs = ", "PersistentKeepalive = ", "DNS = ", "Table = off", "PostUp = ", "\n", " = ", ",", "/", ":", "[::1]:51820",
        "0.0.0.0/0", "::/0", "peer.example:51820", "#", "off", "0x", "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=");

    public override IEnumerable<byte[]> Seeds()
    {
        yield return Utf8("""
            [Interface]
            PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
            Address = 100.64.0.1/32, fd7a:115c:a1e0::1/128
            ListenPort = 51820
            MTU = 1420
            FwMark = 0x1234

            [Peer]
            PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
            PresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=
            AllowedIPs = 100.64.0.2/32, fd7a:115c:a1e0::2/128
            Endpoint = 198.18.0.2:51820
            PersistentKeepalive = 25
            """);
        yield return Utf8("[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n[Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nEndpoint = [fd7a:115c:a1e0::2]:51820\n");
    }

    public override string Run(byte[] input)
    {
        try
        {
            var config = WgQuickConfig.Parse(Text(input), "fuzz.conf", OfflineResolver);
            return $"parsed:{config.Peers.Count > 0}:{config.Addresses.Count > 0}";
        }
        catch (ConfigException e)
        {
            return Refused(e);
        }
    }
}

/// <summary>A <c>set=1</c> request on the UAPI socket (what <c>wg setconf</c> sends), parsed before anything is applied.</summary>
public sealed class UapiHarness : Harness
{
    public override string Name => "uapi";

    public override IReadOnlyList<byte[]> Tokens => Words("private_key=", "public_key=", "preshared_key=", "listen_port=", "fwmark=", "replace_peers=true",
        "remove=true", "update_only=true", "endpoint=", "persistent_keepalive_interval=", "replace_allowed_ips=true", "allowed_ip=", "protocol_version=1",
        "\n", "=", "0000000000000000000000000000000000000000000000000000000000000000", "[::1]:1", "0.0.0.0/0", "-1");

    public override IEnumerable<byte[]> Seeds()
    {
        yield return Utf8("""
            private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a
            listen_port=51820
            fwmark=0
            replace_peers=true
            public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33
            preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52
            replace_allowed_ips=true
            allowed_ip=100.64.0.2/32
            allowed_ip=fd7a:115c:a1e0::2/128
            endpoint=198.18.0.2:51820
            persistent_keepalive_interval=25
            public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376
            remove=true
            """);
    }

    public override string Run(byte[] input)
    {
        try
        {
            var operations = UapiServer.Parse(Text(input).Split('\n'));
            return "parsed:" + string.Join(",", operations.Select(o => o.GetType().Name).Distinct().Order());
        }
        catch (FormatException e)
        {
            return Refused(e);
        }
    }
}

/// <summary>A query to the MagicDNS server (100.100.100.100), parsed and answered from a name table.</summary>
public sealed class DnsHarness : Harness
{
    private readonly DnsNameTable _names = new(
        [new DnsHost("web.acme.weft.internal.", [IPAddress.Parse("100.64.0.1"), IPAddress.Parse("fd7a:115c:a1e0::1")])],
        ["acme.weft.internal."]);
    private readonly byte[] _nameBuffer = new byte[DnsMessage.MaxNameLength];
    private readonly byte[] _response = new byte[4096];

    public override string Name => "dns";

    public override int MaxInputBytes => 4096;

    public override IReadOnlyList<byte[]> Tokens => [[0xc0, 0x0c], [0, 1, 0, 1], [0, 28, 0, 1], [0, 12, 0, 1], [0, 41], [3, (byte)'w', (byte)'e', (byte)'b'], [0]];

    public override IEnumerable<byte[]> Seeds()
    {
        yield return Query("web.acme.weft.internal", 1);
        yield return Query("web.acme.weft.internal", 28);
        yield return Query("1.0.64.100.in-addr.arpa", 12);
        yield return Query("nothing.example", 1);
    }

    private static byte[] Query(string name, ushort type)
    {
        var bytes = new List<byte> { 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
        foreach (var label in name.Split('.'))
        {
            bytes.Add((byte)label.Length);
            bytes.AddRange(System.Text.Encoding.ASCII.GetBytes(label));
        }
        bytes.AddRange([0, (byte)(type >> 8), (byte)type, 0, 1]);
        return [.. bytes];
    }

    public override string Run(byte[] input)
    {
        string parsed;
        try
        {
            var query = DnsMessage.ParseQuery(input, _nameBuffer);
            parsed = "parsed:" + query.Type;
        }
        catch (DnsFormatException e)
        {
            parsed = Refused(e);
        }
        var length = MagicDnsResolver.Answer(input, _response, _names);
        return parsed + ":answer=" + (length > 0 ? _response[3] & 0x0f : -1);
    }
}
