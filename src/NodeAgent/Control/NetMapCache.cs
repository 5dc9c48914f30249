using Google.Protobuf;
using Weft.Contracts.Control;

namespace Weft.NodeAgent.Control;

/// <summary>
/// Where the agent keeps its last netmap, so that a restart while no coordinator answers still
/// brings the tunnels up (the data plane outlives the control plane, as in Tailscale).
/// </summary>
public interface INetMapCache
{
    /// <summary>The cached map, or null if there is none or it cannot be read (a damaged cache is ignored, never fatal).</summary>
    NetMap? Load();

    void Save(NetMap map);

    void Delete();
}

/// <summary>The netmap as protobuf in <c>netmap.pb</c> next to the agent state, mode 0600, replaced atomically.</summary>
public sealed class FileNetMapCache(string directory) : INetMapCache
{
    public const string FileName = "netmap.pb";
    /// <summary>A netmap of thousands of peers is a few MB; anything far beyond is not ours.</summary>
    private const long MaxBytes = 64L << 20;

    public string Path { get; } = System.IO.Path.Combine(directory, FileName);

    public NetMap? Load()
    {
        try
        {
            var info = new FileInfo(Path);
            if (!info.Exists || info.Length > MaxBytes) return null;
            var map = NetMap.Parser.ParseFrom(File.ReadAllBytes(Path));
            return map.Self is null ? null : map;
        }
        catch (Exception e) when (e is IOException or InvalidProtocolBufferException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public void Save(NetMap map) => PrivateFile.Replace(Path, map.WriteTo);

    public void Delete()
    {
        try { File.Delete(Path); } catch (IOException) { }
    }
}
