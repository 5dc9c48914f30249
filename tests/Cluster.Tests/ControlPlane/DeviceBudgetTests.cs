using Grpc.Core;
using Weft.Cluster.Control;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Tests.Support;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Tests.ControlPlane;

/// <summary>
/// One registered device, buggy or hostile, against a real coordinator on SQLite: what it may ask of the
/// cluster is bounded per device (journal writes, full maps, open streams), so every other tenant on the
/// node keeps its share. A request beyond the budget is held, the latest of its kind, not lost.
/// </summary>
public class DeviceBudgetTests
{
    [Fact]
    public async Task A_device_flooding_host_info_costs_at_most_its_budget_in_journal_writes_and_its_latest_host_name_still_lands()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:HostinfoReportsPerMinutePerDevice", "30")]);
        var (tailnet, stream) = await RegisteredDevice(node, "budget");
        await using var _ = stream;
        var before = JournalRows(storage, tailnet);

        // Each new host name is a journal write and a patch to every peer. 60 of them at once: the budget is 30 a
        // minute (as many in a burst), so about 30 are written, and of the rest only the last, when the budget allows.
        for (var i = 1; i <= 60; i++)
            await stream.Send(new ClientMessage { Hostinfo = new HostinfoUpdate { Hostname = $"flood-{i}", Os = "linux" } });

        var device = await Eventually(async () =>
        {
            var listed = (await node.Http.ListDevices(tailnet)).Devices.Single();
            return listed.Hostname == "flood-60" ? listed : null;
        }, TimeSpan.FromSeconds(20));
        Assert.Equal("flood-60", device.Hostname);
        var written = JournalRows(storage, tailnet) - before;
        // 30 in the burst, one or two refilled while the flood was sent, and the latest: not 60.
        Assert.InRange(written, 30, 34);
    }

    [Fact]
    public async Task A_machine_key_holds_a_bounded_number_of_streams_and_the_newest_ones_stay()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage,
            [new("Weft:Control:StreamsPerMachine", "2"), new("Weft:Control:HandshakesPerSecondPerMachine", "0")]);
        using var machine = Curve25519PrivateKey.Generate();
        var start = DateTimeOffset.UtcNow;
        var streams = new List<RawControlStream>();
        try
        {
            for (var i = 0; i < 5; i++)
            {
                var stream = await RawControlStream.OpenAsync(node.Control);
                streams.Add(stream);
                await stream.Handshake(machine, start.AddMilliseconds(i)); // each a fresh handshake, not a replay
                // Its session is up before the next stream opens, so "oldest" is the order the test opened them in.
                await stream.Send(new ClientMessage { Ping = new Ping { Nonce = 100 + (ulong)i } });
                Assert.Equal(100 + (ulong)i, (await stream.Receive(TimeSpan.FromSeconds(10))).Pong.Nonce);
            }

            // The three oldest are told why and ended; the two newest are answered.
            for (var i = 0; i < 3; i++)
            {
                var told = await streams[i].Receive(TimeSpan.FromSeconds(10));
                Assert.Equal(ServerMessage.BodyOneofCase.Error, told.BodyCase);
                Assert.Contains("newer stream", told.Error.Message);
                Assert.True(await streams[i].EndsSoon(), $"stream {i} stayed open");
            }
            for (var i = 3; i < 5; i++)
            {
                await streams[i].Send(new ClientMessage { Ping = new Ping { Nonce = (ulong)i } });
                Assert.Equal((ulong)i, (await streams[i].Receive(TimeSpan.FromSeconds(10))).Pong.Nonce);
            }
        }
        finally
        {
            foreach (var stream in streams) await stream.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_stream_that_never_registers_is_ended_with_a_reason_and_one_that_keeps_asking_for_a_login_is_not()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:UnregisteredStreamSeconds", "20")]);
        var tailnet = (await node.Http.CreateTailnet($"idle-{Guid.NewGuid():N}"[..20])).Id;
        await using var idle = await RawControlStream.OpenAsync(node.Control);
        using var idleMachine = Curve25519PrivateKey.Generate();
        await idle.Handshake(idleMachine);
        // The other asks again and again, as an agent does while its device waits for a key (refused each time).
        await using var asking = await RawControlStream.OpenAsync(node.Control);
        using var askingMachine = Curve25519PrivateKey.Generate();
        using var askingNode = Curve25519PrivateKey.Generate();
        await asking.Handshake(askingMachine);
        var started = DateTimeOffset.UtcNow;

        var keepAsking = Task.Run(async () =>
        {
            for (var i = 0; i < 11; i++)
            {
                var answer = await asking.Register(askingMachine, askingNode, tailnet: tailnet);
                Assert.NotEqual(RegisterResult.Types.Status.Authorized, answer.Status);
                await Task.Delay(TimeSpan.FromSeconds(2.5));
            }
        });

        var told = await idle.Receive(TimeSpan.FromSeconds(40));
        Assert.Equal(ServerMessage.BodyOneofCase.Error, told.BodyCase);
        Assert.Equal(ControlErrorCodes.NotRegistered, told.Error.Code);
        Assert.True(DateTimeOffset.UtcNow - started >= TimeSpan.FromSeconds(19), "ended before its time");
        Assert.True(await idle.EndsSoon());

        await keepAsking; // 27 s of asking, past the limit: its stream stayed
        await asking.Send(new ClientMessage { Ping = new Ping { Nonce = 9 } });
        Assert.Equal(9UL, (await asking.Receive(TimeSpan.FromSeconds(10))).Pong.Nonce);
    }

    [Fact]
    public async Task A_device_asking_for_full_maps_over_and_over_gets_its_budget_of_them_and_then_one_for_the_latest_ask()
    {
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:SubscribesPerMinutePerDevice", "6")]);
        var (_, stream) = await RegisteredDevice(node, "maps");
        await using var _ = stream;

        // Version 0 each time, each after the last was answered: a full map built and sent for each, until the budget says no.
        var sending = DateTimeOffset.UtcNow;
        var reading = Task.Run(async () =>
        {
            var arrivals = new List<TimeSpan>();
            try
            {
                // For 16 s from the first ask (the read that times out cancels the call: this is the last look).
                while (true)
                {
                    var left = sending + TimeSpan.FromSeconds(16) - DateTimeOffset.UtcNow;
                    if (left <= TimeSpan.Zero) break;
                    if ((await stream.Receive(left)).BodyCase == ServerMessage.BodyOneofCase.Netmap) arrivals.Add(DateTimeOffset.UtcNow - sending);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
            {
            }
            return arrivals;
        });
        for (var i = 0; i < 30; i++)
        {
            await stream.Send(new ClientMessage { Subscribe = new Subscribe { LastVersion = 0 } });
            await Task.Delay(100);
        }
        var maps = await reading;

        // The burst of 6 (and one refilled while the 3 s of asks were sent), then nothing until the budget allows
        // one more (a refill every 10 s): that one answers the latest ask, which was held, not dropped.
        Assert.InRange(maps.Count(at => at < TimeSpan.FromSeconds(5)), 1, 7);
        var later = maps.Where(at => at >= TimeSpan.FromSeconds(5)).ToList();
        Assert.Single(later);
        Assert.InRange(later[0], TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(13));
    }

    [Fact]
    public async Task A_registered_device_registering_again_and_again_is_refused_beyond_its_budget_with_a_retry_time()
    {
        // Each registration of a device can be a journal write that patches every peer (a new host name or disco key).
        await using var storage = TestStorage.NewSqlite();
        await using var node = await TestCoordinator.StartAsync(storage, [new("Weft:Control:RegistrationsPerMinutePerDevice", "3")]);
        var tailnet = (await node.Http.CreateTailnet($"again-{Guid.NewGuid():N}"[..20])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet, reusable: true)).Key;
        await using var stream = await RawControlStream.OpenAsync(node.Control);
        using var machine = Curve25519PrivateKey.Generate();
        using var nodeKey = Curve25519PrivateKey.Generate();
        await stream.Handshake(machine);
        Assert.Equal(RegisterResult.Types.Status.Authorized, (await stream.Register(machine, nodeKey, authKey: key)).Status);

        var answers = new List<RegisterResult>();
        for (var i = 0; i < 8; i++) answers.Add(await stream.Register(machine, nodeKey, authKey: key, hostname: $"again-{i}"));

        Assert.Equal(3, answers.Count(a => a.Status == RegisterResult.Types.Status.Authorized));
        var refused = answers.Where(a => a.Status != RegisterResult.Types.Status.Authorized).ToList();
        Assert.All(refused, a => Assert.Equal(ControlErrorCodes.RateLimited, a.RefusalCode));
        Assert.All(refused, a => Assert.True(a.RetryAfterMs >= 1000));
        Assert.Equal("again-2", (await node.Http.ListDevices(tailnet)).Devices.Single().Hostname);
    }

    [Fact]
    public void A_devices_budget_is_kept_by_machine_key_so_reconnecting_does_not_refill_it()
    {
        var admission = new ControlAdmission(new ControlSettings { NodeKeyRotationsPerHourPerDevice = 3, EndpointReportsPerSecondPerDevice = 0 }, TimeProvider.System);
        Assert.Equal(3, Enumerable.Range(0, 10).Count(i => admission.TryAdmitFromDevice("machine-a", DeviceRequest.NodeKeyRotation, out _)));
        Assert.False(admission.TryAdmitFromDevice("machine-a", DeviceRequest.NodeKeyRotation, out var wait));
        Assert.InRange(wait, 1_000u, 20u * 60 * 1000); // a refill every 20 minutes
        Assert.True(admission.TryAdmitFromDevice("machine-b", DeviceRequest.NodeKeyRotation, out _));
        Assert.True(admission.TryAdmitFromDevice("machine-a", DeviceRequest.Hostinfo, out _)); // each kind its own
        Assert.All(Enumerable.Range(0, 1000), i => Assert.True(admission.TryAdmitFromDevice("machine-a", DeviceRequest.Endpoints, out _))); // 0: no limit
    }

    /// <summary>A new tailnet with one device registered with an auth key on a raw stream, which is returned open.</summary>
    private static async Task<(string Tailnet, RawControlStream Stream)> RegisteredDevice(TestCoordinator node, string name)
    {
        var tailnet = (await node.Http.CreateTailnet($"{name}-{Guid.NewGuid():N}"[..20])).Id;
        var key = (await node.Http.CreateAuthKey(tailnet)).Key;
        var stream = await RawControlStream.OpenAsync(node.Control);
        using var machine = Curve25519PrivateKey.Generate();
        using var nodeKey = Curve25519PrivateKey.Generate();
        await stream.Handshake(machine);
        Assert.Equal(RegisterResult.Types.Status.Authorized, (await stream.Register(machine, nodeKey, authKey: key)).Status);
        return (tailnet, stream);
    }

    private static long JournalRows(TestStorage storage, string tailnet)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={storage.SqliteDatabase};Mode=ReadOnly");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT COUNT(*) FROM journal WHERE persistence_id = $id";
        query.Parameters.AddWithValue("$id", TailnetActor.PersistenceIdOf(tailnet));
        return (long)query.ExecuteScalar()!;
    }

    private static async Task<T> Eventually<T>(Func<Task<T?>> probe, TimeSpan within) where T : class
    {
        var deadline = DateTimeOffset.UtcNow + within;
        while (true)
        {
            if (await probe() is { } found) return found;
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"not within {within.TotalSeconds:0} s");
            await Task.Delay(100);
        }
    }
}
