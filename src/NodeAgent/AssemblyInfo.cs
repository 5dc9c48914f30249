// The node agent drives Linux TUN devices, netlink tools and unix sockets.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
