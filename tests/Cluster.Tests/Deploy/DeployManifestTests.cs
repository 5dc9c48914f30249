using System.Reflection;
using System.Text.RegularExpressions;
using Weft.Cluster.Api;
using Weft.Cluster.Hosting;
using YamlDotNet.RepresentationModel;

namespace Weft.Cluster.Tests.Deploy;

/// <summary>
/// deploy/ checked against itself and against the code: every Kubernetes object well formed and of a
/// known kind, every reference between them resolving (selectors, ports, service account, secret,
/// config map), every setting a manifest, unit or example sets being one Weft reads, and the probes
/// pointing at endpoints the coordinator serves. No cluster is needed: this is the dry run that can run
/// anywhere. (docker build and kubectl apply need an engine and a cluster, which CI does not have.)
/// </summary>
public class DeployManifestTests
{
    private const string PodNameLabel = "statefulset.kubernetes.io/pod-name";
    private static readonly string Deploy = Path.Combine(RepositoryRoot(), "deploy");

    private static readonly Dictionary<string, string> KnownKinds = new()
    {
        ["StatefulSet"] = "apps/v1",
        ["Service"] = "v1",
        ["ServiceAccount"] = "v1",
        ["ConfigMap"] = "v1",
        ["Secret"] = "v1",
        ["Role"] = "rbac.authorization.k8s.io/v1",
        ["RoleBinding"] = "rbac.authorization.k8s.io/v1",
        ["PodDisruptionBudget"] = "policy/v1",
    };

    [Fact]
    public void Every_kubernetes_manifest_is_a_well_formed_object_of_a_known_kind_and_the_kustomization_lists_them_all()
    {
        var kustomization = Documents(Path.Combine(Deploy, "kubernetes", "kustomization.yaml")).Single();
        var listed = Sequence(kustomization, "resources").Select(r => r.ToString()).ToList();
        var files = Directory.GetFiles(Path.Combine(Deploy, "kubernetes"), "*.yaml").Select(Path.GetFileName)
            .Where(f => f is not ("kustomization.yaml" or "secret.example.yaml")).Order().ToList();
        Assert.Equal(files, listed.Order());

        foreach (var document in AllObjects())
        {
            var kind = Text(document, "kind");
            Assert.True(KnownKinds.TryGetValue(kind, out var apiVersion), $"unexpected kind {kind}");
            Assert.Equal(apiVersion, Text(document, "apiVersion"));
            Assert.Matches(new Regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), Text(document, "metadata", "name"));
            Assert.Equal("weft", Text(document, "metadata", "labels", "app.kubernetes.io/name"));
        }
    }

    [Fact]
    public void The_statefulset_matches_its_services_service_account_secret_and_config_map()
    {
        var objects = AllObjects();
        var set = Single(objects, "StatefulSet");
        var pod = Node(set, "spec", "template");
        var podLabels = Labels(Node(pod, "metadata", "labels"));
        Assert.True(Subset(Labels(Node(set, "spec", "selector", "matchLabels")), podLabels), "the selector matches the pod template's labels");

        var governing = Named(objects, "Service", Text(set, "spec", "serviceName"));
        Assert.Equal("None", Text(governing, "spec", "clusterIP"));
        Assert.Equal("true", Text(governing, "spec", "publishNotReadyAddresses"));

        var container = (YamlMappingNode)Sequence(pod, "spec", "containers").Single();
        var ports = Sequence(container, "ports").Cast<YamlMappingNode>().ToDictionary(p => Text(p, "name"), p => int.Parse(Text(p, "containerPort")));
        var replicas = int.Parse(Text(set, "spec", "replicas"));
        var podNames = Enumerable.Range(0, replicas).Select(i => $"{Text(set, "metadata", "name")}-{i}").ToList();
        foreach (var service in objects.Where(o => Text(o, "kind") == "Service"))
        {
            // A Service for one pod (its relay) selects it by the name the StatefulSet gives it.
            var selector = Labels(Node(service, "spec", "selector"));
            if (selector.Remove(PodNameLabel, out var podName)) Assert.Contains(podName, podNames);
            Assert.True(Subset(selector, podLabels), $"service {Text(service, "metadata", "name")} selects the pods");
            foreach (var port in Sequence(service, "spec", "ports").Cast<YamlMappingNode>())
                Assert.True(ports.ContainsKey(Text(port, "targetPort")), $"service {Text(service, "metadata", "name")} targets container port {Text(port, "targetPort")}");
        }
        Assert.True(Subset(Labels(Node(Single(objects, "PodDisruptionBudget"), "spec", "selector", "matchLabels")), podLabels));

        // The service account may list pods: cluster bootstrap finds the other coordinators that way.
        var account = Text(pod, "spec", "serviceAccountName");
        Named(objects, "ServiceAccount", account);
        var binding = objects.Single(o => Text(o, "kind") == "RoleBinding"
            && Sequence(o, "subjects").Cast<YamlMappingNode>().Any(s => Text(s, "kind") == "ServiceAccount" && Text(s, "name") == account));
        var role = Named(objects, "Role", Text(binding, "roleRef", "name"));
        Assert.Contains(Sequence(role, "rules").Cast<YamlMappingNode>(), rule =>
            Sequence(rule, "resources").Any(r => r.ToString() == "pods") && Sequence(rule, "verbs").Any(v => v.ToString() == "list"));

        // Every setting comes from somewhere that exists, and is one Weft reads.
        var env = Sequence(container, "env").Cast<YamlMappingNode>().ToList();
        var settings = new Dictionary<string, string>();
        foreach (var variable in env)
        {
            var name = Text(variable, "name");
            if (variable.Children.ContainsKey("value")) settings[name] = Text(variable, "value");
            else if (TryNode(variable, out var secret, "valueFrom", "secretKeyRef"))
            {
                var example = Documents(Path.Combine(Deploy, "kubernetes", "secret.example.yaml")).Single();
                Assert.Equal(Text(example, "metadata", "name"), Text(secret, "name"));
                Assert.True(Node(example, "stringData").Children.ContainsKey(new YamlScalarNode(Text(secret, "key"))), "the secret example has the key the pod reads");
                settings[name] = "secret";
            }
            else settings[name] = Text(variable, "valueFrom", "fieldRef", "fieldPath");
        }
        var configMap = Named(objects, "ConfigMap", Text((YamlMappingNode)Sequence(container, "envFrom").Single(), "configMapRef", "name"));
        foreach (var (key, value) in Node(configMap, "data").Children) settings[key.ToString()] = value.ToString();
        foreach (var name in settings.Keys.Where(k => k.StartsWith("Weft__", StringComparison.Ordinal))) AssertIsASetting(name);

        Assert.Equal("status.podIP", settings["Weft__Cluster__Hostname"]);
        Assert.Equal(nameof(ClusterDiscovery.Kubernetes), settings["Weft__Cluster__Discovery"]);
        Assert.True(Subset(ParseSelector(settings["Weft__Cluster__Kubernetes__PodLabelSelector"]), podLabels), "the discovery selector finds the pods");
        Assert.Equal(ports["management"], int.Parse(settings["Weft__Cluster__Kubernetes__ManagementPort"]));
        Assert.Equal(ports["remoting"], int.Parse(settings["Weft__Cluster__Port"]));
        Assert.Equal(ports["api"], new Uri(settings["Weft__Api__Listen"]).Port);
        Assert.Equal(ports["control"], new Uri(settings["Weft__Control__Listen"]).Port);

        // Every pod's relay is in the one region, reached from outside through a Service of its own, and meshed
        // with the others through the governing Service's pod names (a relay skips itself in the list).
        var relayPort = ports["relay"];
        var meshPeers = settings.Where(s => s.Key.StartsWith("Weft__Relay__MeshPeers__", StringComparison.Ordinal)).Select(s => s.Value).ToHashSet();
        Assert.Equal(podNames.Select(pod => $"{pod}.{Text(set, "spec", "serviceName")}:{relayPort}").ToHashSet(), meshPeers);
        Assert.Equal("secret", settings["Weft__Relay__MeshKey"]);
        for (var i = 0; i < replicas; i++)
        {
            Assert.Equal(relayPort, int.Parse(settings[$"Weft__Relay__Regions__0__Nodes__{i}__Port"]));
            Assert.Equal(ports["stun"], int.Parse(settings[$"Weft__Relay__Regions__0__Nodes__{i}__StunPort"]));
            var host = settings[$"Weft__Relay__Regions__0__Nodes__{i}__Host"];
            Assert.False(string.IsNullOrEmpty(host), "a relay node reached at the control host would land on any pod");
            var own = objects.Single(o => Text(o, "kind") == "Service" && Labels(Node(o, "spec", "selector")).GetValueOrDefault(PodNameLabel) == podNames[i]);
            var exposed = Sequence(own, "spec", "ports").Cast<YamlMappingNode>().ToDictionary(p => Text(p, "targetPort"), p => Text(p, "protocol"));
            Assert.Equal("TCP", exposed["relay"]);
            Assert.Equal("UDP", exposed["stun"]);
            // Readiness includes the database; the relay does not need it, and stays reachable while it is away.
            Assert.Equal("true", Text(own, "spec", "publishNotReadyAddresses"));
        }
        // Whatever agents reach from outside keeps their own source address: STUN answers with it, and every
        // limit per source address counts it (through the node that forwarded it, one tenant's storm would
        // take the allowance of every agent on that node).
        var external = objects.Where(o => Text(o, "kind") == "Service"
            && Node(o, "spec").Children.TryGetValue(new YamlScalarNode("type"), out var type) && type is YamlScalarNode { Value: "LoadBalancer" }).ToList();
        Assert.Contains(external, service => Text(service, "metadata", "name") == "weft-control");
        foreach (var service in external)
            Assert.True(Text(service, "spec", "externalTrafficPolicy") == "Local", $"service {Text(service, "metadata", "name")} hides its clients' addresses");
        Assert.False(settings.Keys.Any(k => k.StartsWith("Weft__Relay__Regions__0__Nodes__", StringComparison.Ordinal) && k.Contains($"__{replicas}__")), "a relay node for a pod that does not exist");

        // The probes ask what the coordinator serves; a stopping pod gets time to leave gracefully.
        Assert.Equal(HealthEndpoint.ReadyPath, Text(container, "readinessProbe", "httpGet", "path"));
        Assert.True(ports.ContainsKey(Text(container, "readinessProbe", "httpGet", "port")));
        Assert.True(int.Parse(Text(pod, "spec", "terminationGracePeriodSeconds")) >= 30);
        Assert.Equal("/tmp", settings["DOTNET_BUNDLE_EXTRACT_BASE_DIR"]);
    }

    [Fact]
    public void The_systemd_units_run_the_published_executables_and_their_examples_set_only_weft_settings()
    {
        var coordinator = File.ReadAllText(Path.Combine(Deploy, "systemd", "weft.service"));
        Assert.Contains("ExecStart=/opt/weft/weft\n", coordinator);
        Assert.Contains("KillSignal=SIGTERM", coordinator);
        foreach (var line in File.ReadAllLines(Path.Combine(Deploy, "systemd", "weft.env.example")).Where(l => l.Length > 0 && !l.StartsWith('#')))
            AssertIsASetting(line[..line.IndexOf('=')]);

        var agent = File.ReadAllText(Path.Combine(Deploy, "systemd", "weft-agent.service"));
        var exec = agent.Split('\n').Single(l => l.StartsWith("ExecStart=", StringComparison.Ordinal));
        Assert.StartsWith("ExecStart=/opt/weft/weft-agent daemon ", exec);
        var variables = File.ReadAllLines(Path.Combine(Deploy, "systemd", "agent.env.example")).Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l[..l.IndexOf('=')]).Append("STATE_DIRECTORY").ToHashSet();
        foreach (Match used in Regex.Matches(exec, @"\$\{(\w+)\}")) Assert.Contains(used.Groups[1].Value, variables);
        foreach (Match flag in Regex.Matches(exec, @"--[a-z-]+")) Assert.Contains(flag.Value, AgentFlags("daemon"));
    }

    [Fact]
    public void The_container_image_is_built_with_the_publish_profiles_and_runs_what_they_publish()
    {
        var containerfile = File.ReadAllText(Path.Combine(Deploy, "container", "Containerfile"));
        foreach (var (project, output, executable) in new[] { ("src/Cluster", "weft-linux-x64", "weft"), ("src/NodeAgent", "weft-agent-linux-x64", "weft-agent") })
        {
            Assert.Contains($"dotnet publish {project} -p:PublishProfile=linux-x64", containerfile);
            var profile = File.ReadAllText(Path.Combine(RepositoryRoot(), project, "Properties", "PublishProfiles", "linux-x64.pubxml"));
            Assert.Contains($"artifacts/publish/{output}/", profile);
            Assert.Contains("<SelfContained>true</SelfContained>", profile);
            Assert.Contains($"COPY --from=build /src/artifacts/publish/{output}/ /opt/weft/", containerfile);
            Assert.Contains($"ENTRYPOINT [\"/opt/weft/{executable}\"", containerfile);
        }
        foreach (Match target in Regex.Matches(containerfile, @"--target (\w+)")) Assert.Contains($"AS {target.Groups[1].Value}", containerfile);
    }

    /// <summary>The flags of a <c>weft-agent</c> command, as its command line defines them.</summary>
    private static IReadOnlyCollection<string> AgentFlags(string command) =>
        NodeAgent.Cli.AgentCommandLine.Build().Subcommands.Single(c => c.Name == command).Options.SelectMany(o => o.Aliases.Append(o.Name)).ToHashSet();

    /// <summary>Weft__A__B__0 must name a property path of <see cref="WeftSettings"/> (array items by index).</summary>
    private static void AssertIsASetting(string variable)
    {
        var parts = variable.Split("__");
        Assert.Equal(WeftSettings.Section, parts[0]);
        var type = typeof(WeftSettings);
        foreach (var part in parts.Skip(1))
        {
            if (type.IsArray && int.TryParse(part, out _))
            {
                type = type.GetElementType()!;
                continue;
            }
            var property = type.GetProperty(part, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
            Assert.True(property is not null, $"{variable}: {type.Name} has no setting '{part}'");
            type = property!.PropertyType;
        }
    }

    private static List<YamlMappingNode> AllObjects()
    {
        var kustomization = Documents(Path.Combine(Deploy, "kubernetes", "kustomization.yaml")).Single();
        return Sequence(kustomization, "resources").SelectMany(r => Documents(Path.Combine(Deploy, "kubernetes", r.ToString())))
            .Concat(Documents(Path.Combine(Deploy, "kubernetes", "secret.example.yaml"))).ToList();
    }

    private static List<YamlMappingNode> Documents(string path)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(path);
        stream.Load(reader);
        return stream.Documents.Select(d => (YamlMappingNode)d.RootNode).ToList();
    }

    private static YamlMappingNode Single(IEnumerable<YamlMappingNode> objects, string kind) => objects.Single(o => Text(o, "kind") == kind);

    private static YamlMappingNode Named(IEnumerable<YamlMappingNode> objects, string kind, string name) =>
        objects.SingleOrDefault(o => Text(o, "kind") == kind && Text(o, "metadata", "name") == name)
        ?? throw new Xunit.Sdk.XunitException($"no {kind} named {name}");

    private static YamlMappingNode Node(YamlMappingNode node, params string[] path) =>
        TryNode(node, out var found, path) ? found : throw new Xunit.Sdk.XunitException($"missing {string.Join('.', path)}");

    private static bool TryNode(YamlMappingNode node, out YamlMappingNode found, params string[] path)
    {
        found = node;
        foreach (var key in path)
        {
            if (!found.Children.TryGetValue(new YamlScalarNode(key), out var child) || child is not YamlMappingNode mapping) return false;
            found = mapping;
        }
        return true;
    }

    private static string Text(YamlMappingNode node, params string[] path)
    {
        var parent = path.Length == 1 ? node : Node(node, path[..^1]);
        return parent.Children.TryGetValue(new YamlScalarNode(path[^1]), out var value) && value is YamlScalarNode scalar
            ? scalar.Value ?? ""
            : throw new Xunit.Sdk.XunitException($"missing {string.Join('.', path)}");
    }

    private static IEnumerable<YamlNode> Sequence(YamlMappingNode node, params string[] path)
    {
        var parent = path.Length == 1 ? node : Node(node, path[..^1]);
        return parent.Children.TryGetValue(new YamlScalarNode(path[^1]), out var value) && value is YamlSequenceNode sequence
            ? sequence.Children
            : throw new Xunit.Sdk.XunitException($"missing list {string.Join('.', path)}");
    }

    private static Dictionary<string, string> Labels(YamlMappingNode node) => node.Children.ToDictionary(kv => kv.Key.ToString(), kv => kv.Value.ToString());

    private static Dictionary<string, string> ParseSelector(string selector) =>
        selector.Split(',').Select(p => p.Split('=')).ToDictionary(p => p[0].Trim(), p => p[1].Trim());

    private static bool Subset(Dictionary<string, string> part, Dictionary<string, string> whole) =>
        part.Count > 0 && part.All(kv => whole.TryGetValue(kv.Key, out var value) && value == kv.Value);

    public static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Cluster.sln"))) directory = directory.Parent;
        return directory?.FullName ?? throw new InvalidOperationException("Cluster.sln not found above the test output");
    }
}
