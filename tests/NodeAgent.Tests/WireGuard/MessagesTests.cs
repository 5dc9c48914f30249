using Weft.NodeAgent.WireGuard;

namespace Weft.NodeAgent.Tests.WireGuard;

public class MessagesTests
{
    [Theory]
    [InlineData(0, 0)]     // keepalive: no padding
    [InlineData(1, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 32)]
    [InlineData(1419, 1420)]
    [InlineData(1420, 1420)]
    [InlineData(1413, 1420)] // never past the MTU: 1413 rounds to 1424, capped at 1420
    public void Padding_rounds_up_to_16_but_never_past_the_mtu(int length, int padded)
    {
        Assert.Equal(padded, Messages.PaddedLength(length, 1420));
    }

    [Fact]
    public void Only_the_four_wireguard_types_with_zero_reserved_bytes_are_recognised()
    {
        Assert.Equal(1u, Messages.TypeOf([1, 0, 0, 0]));
        Assert.Equal(4u, Messages.TypeOf([4, 0, 0, 0, 9]));
        Assert.Equal(0u, Messages.TypeOf([1, 0, 0, 1]));
        Assert.Equal(0u, Messages.TypeOf([5, 0, 0, 0]));
        Assert.Equal(0u, Messages.TypeOf([1, 0, 0]));
        Assert.Equal(0u, Messages.TypeOf([]));
    }

    [Fact]
    public void Tai64n_uses_the_tai_label_and_hides_the_low_nanoseconds()
    {
        var time = new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero).AddTicks(1234567);
        var stamp = new byte[12];
        Tai64n.Write(time, stamp);

        Assert.Equal(0x400000000000000AUL + (ulong)time.ToUnixTimeSeconds(), System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(stamp));
        Assert.Equal(0u, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(stamp.AsSpan(8)) & 0xFFFFFF);

        var later = new byte[12];
        Tai64n.Write(time.AddMilliseconds(20), later);
        Assert.True(Tai64n.IsAfter(later, stamp));
        Assert.False(Tai64n.IsAfter(stamp, stamp));
    }
}
