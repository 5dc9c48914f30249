// The control-plane tests run real node agents, which are Linux-only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
