using System.Net;
using System.Net.Sockets;

namespace Weft.ClusterLab;

public static class LoopbackPort
{
    /// <summary>
    /// A loopback TCP port nothing listened on a moment ago: for a process that takes a port number, or
    /// for a server that is gone (connections to it are refused).
    /// </summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
