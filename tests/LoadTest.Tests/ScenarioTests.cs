using Weft.LoadTest.Measurement;
using Weft.LoadTest.Scenarios;
using Weft.NodeAgent.Control;

namespace Weft.LoadTest.Tests;

public sealed class ScenarioTests
{
    [Fact]
    public void A_scenario_file_reads_its_mix_and_phases()
    {
        var scenario = Scenario.Parse("""
            // the benchmark's shape, small
            {
              "name": "mix",
              "tailnets": [ { "count": 3, "nodes": 5 }, { "count": 1, "nodes": 40 } ],
              "joinsInFlight": 64,
              "phases": [
                { "name": "steady", "seconds": 10, "endpointChangesPerSecond": 50, "keyRotationsPerSecond": 1 },
                { "name": "kill", "seconds": 30, "chaosCommand": "deploy/local-cluster kill 2", "chaosAtSecond": 5 },
              ],
            }
            """);
        Assert.Equal(55, scenario.TotalNodes);
        Assert.Equal(4, scenario.TotalTailnets);
        Assert.Equal(64, scenario.JoinsInFlight);
        Assert.Equal(["steady", "kill"], scenario.Phases.Select(p => p.Name));
        Assert.Equal("deploy/local-cluster kill 2", scenario.Phases[1].ChaosCommand);
        Assert.Equal(100, scenario.Phases[1].EndpointChangesPerSecond);
    }

    [Fact]
    public void A_scenario_file_reads_its_policy_shape_and_membership_churn()
    {
        var scenario = Scenario.Parse("""
            {
              "tailnets": [ { "count": 2, "nodes": 30 } ],
              "policyGroups": 3,
              "ephemeralTimeoutSeconds": 5,
              "phases": [ { "name": "churn", "joinsPerSecond": 4, "leavesPerSecond": 2, "ephemeralPerSecond": 1, "policyEditsPerSecond": 0.5 } ],
            }
            """);
        Assert.Equal(3, scenario.PolicyGroups);
        Assert.Equal(5, scenario.EphemeralTimeoutSeconds);
        Assert.True(scenario.TaggedPolicy);
        var phase = Assert.Single(scenario.Phases);
        Assert.Equal((4.0, 2.0, 1.0, 0.5), (phase.JoinsPerSecond, phase.LeavesPerSecond, phase.EphemeralPerSecond, phase.PolicyEditsPerSecond));
        Assert.False(new Scenario().TaggedPolicy);
        Assert.True(new Scenario { Phases = [new ChurnPhase { PolicyEditsPerSecond = 1 }] }.TaggedPolicy);
    }

    [Fact]
    public void The_load_policy_gives_each_group_its_tag_and_each_edit_its_marker()
    {
        var policy = LoadPolicy.Text(groups: 2, marker: 7);
        Assert.Contains("\"tag:load-g0\": []", policy);
        Assert.Contains("\"dst\": [\"tag:load-g1:*\"]", policy);
        Assert.Contains($"tag:load-g1:{LoadPolicy.FirstMarkerPort + 7}", policy);
        Assert.DoesNotContain($":{LoadPolicy.FirstMarkerPort}", LoadPolicy.Text(groups: 2, marker: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => LoadPolicy.Text(2, LoadPolicy.MarkerPorts));

        Assert.Equal(1, LoadPolicy.GroupOf(["tag:other", "tag:load-g1"]));
        Assert.Equal(0, LoadPolicy.GroupOf([]));
        var filter = new Weft.Contracts.Control.PacketFilter();
        Assert.Equal(0, LoadPolicy.MarkerIn(filter));
        filter.Rules.Add(new Weft.Contracts.Control.FilterRule { Ports = { new Weft.Contracts.Control.PortRange { First = 0, Last = 65535 } } });
        filter.Rules.Add(new Weft.Contracts.Control.FilterRule { Ports = { new Weft.Contracts.Control.PortRange { First = LoadPolicy.FirstMarkerPort + 7, Last = LoadPolicy.FirstMarkerPort + 7 } } });
        filter.Rules.Add(new Weft.Contracts.Control.FilterRule { Ports = { new Weft.Contracts.Control.PortRange { First = 22, Last = 22 } } });
        Assert.Equal(7, LoadPolicy.MarkerIn(filter));
    }

    [Fact]
    public void A_mix_flag_reads_groups_of_tailnets()
    {
        Assert.Equal([new TailnetGroup(1000, 50), new TailnetGroup(1, 5000)], Scenario.ParseMix("1000x50, 1x5000"));
    }

    [Theory]
    [InlineData("""{ "tailnets": [ { "count": 1, "nodes": 1 } ] }""", "at least 2")]
    [InlineData("""{ "tailnets": [] }""", "no tailnets")]
    [InlineData("""{ "tailnets": [ { "count": 0, "nodes": 5 } ] }""", "count 0")]
    [InlineData("""{ "tailnets": [ { "count": 2000, "nodes": 1000 } ] }""", "more than")]
    [InlineData("""{ "phases": [ { "name": "x", "seconds": 0 } ] }""", "seconds 0")]
    [InlineData("""{ "phases": [ { "name": "x", "seconds": 5, "chaosAtSecond": 9 } ] }""", "inside the phase")]
    [InlineData("""{ "phases": [ { "name": "x", "endpointChangesPerSecond": -1 } ] }""", "endpointChangesPerSecond")]
    [InlineData("""{ "joinsInFlight": 0 }""", "joinsInFlight")]
    [InlineData("""{ "policyGroups": 0 }""", "policyGroups 0")]
    [InlineData("""{ "tailnets": [ { "count": 1, "nodes": 5 } ], "policyGroups": 3 }""", "fewer than 2 nodes per group")]
    [InlineData("""{ "ephemeralTimeoutSeconds": 0 }""", "ephemeralTimeoutSeconds 0")]
    [InlineData("""{ "thinAbovePeers": -1 }""", "thinAbovePeers -1")]
    [InlineData("""{ "fullSampleEvery": 0 }""", "fullSampleEvery 0")]
    [InlineData("""{ "phases": [ { "name": "x", "leavesPerSecond": -2 } ] }""", "leavesPerSecond")]
    [InlineData("""{ "phases": [ { "name": "x", "policyEditsPerSecond": 20000 } ] }""", "policyEditsPerSecond")]
    [InlineData("""{ "nodes": 5 }""", "not valid JSON for a scenario")]
    [InlineData("""{ "tailnets": "many" }""", "not valid JSON for a scenario")]
    [InlineData("""[1, 2""", "not valid JSON for a scenario")]
    [InlineData("null", "empty")]
    public void A_bad_scenario_is_refused_with_what_is_wrong(string json, string expected)
    {
        var error = Assert.Throws<ScenarioException>(() => Scenario.Parse(json));
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("1000")]
    [InlineData("ax5")]
    [InlineData("3x")]
    [InlineData("1x2x3")]
    public void A_bad_mix_is_refused(string mix) =>
        Assert.Contains("<tailnets>x<nodes>", Assert.Throws<ScenarioException>(() => Scenario.ParseMix(mix)).Message);

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(32767)]
    [InlineData(32768)]
    [InlineData(123_456_789)]
    [InlineData(int.MaxValue)]
    public void A_change_sequence_survives_the_trip_through_an_endpoint(int sequence)
    {
        var endpoint = ChangeEndpoint.For(sequence);
        Assert.StartsWith("198.18.", endpoint);
        Assert.Equal(sequence, ChangeEndpoint.SequenceOf(endpoint));
    }

    [Theory]
    [InlineData("198.19.0.7:41641")]
    [InlineData("198.18.0.1:80")]
    [InlineData("100.64.0.1:1030")]
    [InlineData("[fd7a:115c:a1e0::1]:1030")]
    [InlineData("garbage")]
    [InlineData("")]
    public void Endpoints_that_carry_no_change_are_not_taken_for_one(string endpoint) => Assert.Equal(-1, ChangeEndpoint.SequenceOf(endpoint));

    [Fact]
    public void Join_endpoints_carry_no_change() => Assert.Equal(-1, ChangeEndpoint.SequenceOf(ChangeEndpoint.AtJoin(4242)));
}
