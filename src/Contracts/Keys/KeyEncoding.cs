namespace Weft.Contracts.Keys;

/// <summary>Decodes the two text forms of a 32-byte key: base64 (wg, wg-quick) and lowercase hex (UAPI, prefixed forms).</summary>
public static class KeyEncoding
{
    public const int Size = 32;

    public static bool TryDecodeBase64(string? text, Span<byte> key) =>
        text is { Length: 44 } && Convert.TryFromBase64String(text, key, out var written) && written == Size;

    public static bool TryDecodeHex(string? text, Span<byte> key) =>
        text is { Length: Size * 2 } && Convert.FromHexString(text, key, out _, out var written) == System.Buffers.OperationStatus.Done && written == Size;
}
