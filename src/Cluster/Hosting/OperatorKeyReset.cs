using System.Text;
using Weft.Cluster.ApiKeys;

namespace Weft.Cluster.Hosting;

/// <summary>
/// The way back in when every operator key is lost: <c>weft operator-key reset</c>, run as root on a
/// coordinator's machine, makes a new operator key, prints it once, and leaves only its id and hash
/// in <c>&lt;data-dir&gt;/operator-key.reset</c> (mode 0600). The coordinator on that data directory
/// issues it at its next start and deletes the file. Whoever can write the data directory can already
/// read the database, so the file grants nothing new.
/// </summary>
public static class OperatorKeyReset
{
    public const string FileName = "operator-key.reset";

    public static string PathIn(string dataDirectory) => Path.Combine(Path.GetFullPath(dataDirectory), FileName);

    /// <summary>Writes the request; returns the new key (to show once). Refuses anyone but root.</summary>
    public static ApiKeyToken Request(string dataDirectory, bool isRoot)
    {
        if (!isRoot) throw new UnauthorizedAccessException("only root may reset the operator key (it reads and writes the coordinator's data directory)");
        if (!Directory.Exists(dataDirectory)) throw new DirectoryNotFoundException($"no data directory at {Path.GetFullPath(dataDirectory)}");
        var token = ApiKeyToken.Generate();
        var path = PathIn(dataDirectory);
        File.Delete(path);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var file = new FileStream(path, options))
        {
            file.Write(Encoding.ASCII.GetBytes($"{token.KeyId} {token.SecretHash}\n"));
        }
        return token;
    }

    /// <summary>The pending request in this data directory, if any: the key's id and secret hash.</summary>
    public static (string KeyId, string SecretHash)? Pending(string dataDirectory)
    {
        var path = PathIn(dataDirectory);
        if (!File.Exists(path)) return null;
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite | UnixFileMode.OtherRead | UnixFileMode.GroupRead)) != 0)
            throw new InvalidOperationException($"{path} may be read or written by others; it is ignored. Run weft operator-key reset again.");
        var parts = File.ReadAllText(path).Trim().Split(' ');
        if (parts.Length != 2 || parts[0].Length != 10 || !parts[0].All(c => c is >= 'a' and <= 'z' or >= '2' and <= '7')
            || parts[1].Length != 64 || !parts[1].All(char.IsAsciiHexDigitLower))
            throw new InvalidOperationException($"{path} is not an operator-key reset request; delete it and run weft operator-key reset again");
        return (parts[0], parts[1]);
    }

    public static void Done(string dataDirectory) => File.Delete(PathIn(dataDirectory));
}
