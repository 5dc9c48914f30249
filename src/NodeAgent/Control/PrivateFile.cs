namespace Weft.NodeAgent.Control;

/// <summary>
/// Files that hold the agent's secrets (its keys, its netmap): created with mode 0600 and replaced
/// atomically, so that a crash mid-write leaves the old file whole and no other user ever reads one.
/// </summary>
public static class PrivateFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> into a temporary file (mode 0600), flushed to disk, then renamed over it.</summary>
    public static void Replace(string path, Action<Stream> write)
    {
        var temporary = path + ".tmp";
        File.Delete(temporary); // the mode applies only to a file we create
        using (var stream = new FileStream(temporary, new FileStreamOptions
               {
                   Mode = FileMode.CreateNew,
                   Access = FileAccess.Write,
                   UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
               }))
        {
            write(stream);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
        // The rename itself lives in the folder: until the folder is flushed too, a power cut can bring back the file
        // from before it (a node key the coordinator has replaced since, and an agent that must log in again).
        SyncFolderOf(path);
    }

    /// <summary>
    /// Flushes to disk the folder that holds <paramref name="path"/>, so that a file created or renamed there stays
    /// after a power cut (fsync of the file alone keeps its bytes, not its name).
    /// </summary>
    public static void SyncFolderOf(string path)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var fd = Net.Libc.open(folder, Net.Libc.O_RDONLY | Net.Libc.O_DIRECTORY | Net.Libc.O_CLOEXEC);
        if (fd < 0) throw new IOException($"cannot open {folder} to flush it: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        try
        {
            if (Net.Libc.fsync(fd) != 0) throw new IOException($"cannot flush {folder}: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        }
        finally
        {
            Net.Libc.close(fd);
        }
    }

    /// <summary>
    /// Reads one of the agent's JSON files, refusing one larger than <paramref name="maxBytes"/> or
    /// not valid (<paramref name="what"/> names it in the error): the agent never guesses at a damaged file.
    /// </summary>
    /// <exception cref="AgentStateException">The file is too large, not valid JSON of <typeparamref name="T"/>, or null.</exception>
    public static T ReadJson<T>(string path, int maxBytes, System.Text.Json.JsonSerializerOptions json, string what) where T : class
    {
        var info = new FileInfo(path);
        if (info.Length > maxBytes) throw new AgentStateException($"{path} is {info.Length} bytes; {what} is at most {maxBytes}");
        T? value;
        try
        {
            value = System.Text.Json.JsonSerializer.Deserialize<T>(File.ReadAllBytes(path), json);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new AgentStateException($"{path} is not a valid {what[(what.IndexOf(' ') + 1)..]}: {e.Message}");
        }
        return value ?? throw new AgentStateException($"{path} is empty");
    }
}
