// The node agent is Linux-only (TUN, netlink tools, unix sockets); so are its tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
