using Akka.Actor;
using Google.Protobuf.WellKnownTypes;
using Weft.Cluster.Devices;
using Weft.Cluster.Machines;
using Weft.Cluster.Persistence;
using Weft.Cluster.Tailnets;
using Weft.Cluster.Telemetry;
using Weft.Contracts.Control;
using Weft.Contracts.Keys;

namespace Weft.Cluster.Sessions;

/// <summary>How one registration ended: the answer for the agent, and the device it is now bound to (when accepted).</summary>
public sealed record RegistrationOutcome(RegisterResult Result, string? DeviceId, string? TailnetId)
{
    public bool Accepted => DeviceId is not null;
}

/// <summary>
/// Registers an agent's device: finds its tailnet (machine binding, auth key, or a tailnet name to
/// wait in), has the tailnet register it, binds the machine key to it and initializes its entity.
/// Runs as a task outside the session's mailbox (its result is piped back), so deliveries and
/// keepalives never wait behind these asks. Every step is idempotent: an agent that retries after a
/// timeout ends up with the same device.
/// </summary>
public static class DeviceRegistrar
{
    /// <summary>One attempt of one step. An entity whose node was just lost does not answer until its shard
    /// starts elsewhere; a short attempt, repeated, reaches it as soon as it does.</summary>
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(2);
    /// <summary>How long a registration keeps trying before it tells the agent to come back later.</summary>
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    /// <summary>What an agent waits before retrying when a step did not answer in time (plus its own jitter).</summary>
    public const uint RetryAfterMs = 2000;

    /// <summary>What the agent waits before it asks again while its device waits for approval.</summary>
    public const uint ApprovalPollMs = 10_000;

    /// <summary>What the agent waits before it asks again while its person signs in (they are at the browser now).</summary>
    public const uint LoginPollMs = 2_000;

    /// <param name="remoteAddress">The client's IP address, kept with a new device (an admin approving it sees where it came from).</param>
    public static async Task<RegistrationOutcome> RegisterAsync(SessionServices services, MachineKey machine, RegisterRequest request, System.Net.IPAddress? remoteAddress = null)
    {
        var outcome = await RegisterOnceAsync(services, machine, request, remoteAddress);
        CoordinatorMetrics.Registrations.Add(1, new KeyValuePair<string, object?>("result", ResultOf(outcome.Result)));
        return outcome;
    }

    /// <summary>The label a registration is counted under: <c>authorized</c>, <c>pending</c>, or the refusal's code.</summary>
    private static string ResultOf(RegisterResult result) => result.Status switch
    {
        RegisterResult.Types.Status.Authorized => "authorized",
        RegisterResult.Types.Status.PendingApproval => "pending",
        _ => result.RefusalCode.Length > 0 ? result.RefusalCode : "refused",
    };

    private static async Task<RegistrationOutcome> RegisterOnceAsync(SessionServices services, MachineKey machine, RegisterRequest request, System.Net.IPAddress? remoteAddress)
    {
        if (request.NodeKey.Length != 32) return Refuse(ControlErrorCodes.InvalidRequest, "node_key must be 32 bytes");
        if (request.DiscoKey.Length is not (0 or 32)) return Refuse(ControlErrorCodes.InvalidRequest, "disco_key must be 32 bytes");
        var nodeKey = new Curve25519PublicKey(request.NodeKey.Span);
        if (!NodeKeyProof.Verify(services.CoordinatorKey, nodeKey, machine.Key, request.NodeKeyProof.Span))
            return Refuse(ControlErrorCodes.NodeKeyProofInvalid, "the node key proof does not verify: the agent must hold the node key's private half");

        if ((request.ResumeTailnetId.Length > 0 || request.ResumeDeviceId.Length > 0)
            && !(Identifiers.IsId(request.ResumeTailnetId, Identifiers.TailnetPrefix) && Identifiers.IsId(request.ResumeDeviceId, Identifiers.DevicePrefix)))
            return Refuse(ControlErrorCodes.InvalidRequest, "resume_tailnet_id and resume_device_id go together, as a tailnet id (tn_…) and a device id (dev_…) from a RegisterResult");
        AuthKeyToken? authKey = null;
        if (request.AuthKey.Length > 0 && !AuthKeyToken.TryParse(request.AuthKey, out authKey))
            return Refuse(ControlErrorCodes.AuthKeyUnknown, "the auth key is not a Weft auth key (weft-auth.<tailnet>.<id>.<secret>)");
        if (!services.Admission.TryAdmitRegistrationFrom(remoteAddress, out var wait))
            return Refuse(ControlErrorCodes.RateLimited, "too many registrations from this address; retry shortly", wait);
        if (!services.Admission.TryAdmitRegistrationWith(authKey is null ? null : authKey.TailnetId + "/" + authKey.KeyId, out wait))
            return Refuse(ControlErrorCodes.RateLimited, "too many registrations with this auth key; retry shortly", wait);
        if (!services.Admission.TryAdmitRegistration(out wait))
            return Refuse(ControlErrorCodes.RateLimited, "too many registrations at once; retry shortly", wait);

        var machineHex = machine.Key.ToHex();
        var deadline = services.Clock.GetUtcNow() + Deadline;
        async Task<object> Ask(IActorRef entity, object message)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                return await AskUntil(entity, message, deadline, services.Clock);
            }
            finally
            {
                CoordinatorMetrics.RegistrationStepDuration.Record(CoordinatorMetrics.SecondsSince(started), new KeyValuePair<string, object?>("step", StepOf(message)));
            }
        }

        // Has the tailnet register the device, binds the machine key to it (not for a resume), and starts its
        // entity. Null only for a resume the tailnet did not take: the device is not this machine's there.
        async Task<RegistrationOutcome?> RegisterInTailnetAsync(string tailnetId, bool keyless, string? resumeDeviceId)
        {
            var register = new RegisterDevice(tailnetId, services.Affinity.NewDeviceId(tailnetId), machineHex, nodeKey.ToHex(),
                Convert.ToHexStringLower(request.DiscoKey.Span), Truncate(request.Hostname, 255), Truncate(request.Os, 64),
                authKey?.KeyId, authKey?.SecretHash, services.Clock.GetUtcNow(), Truncate(request.AgentVersion, 64),
                remoteAddress is null ? "" : Weft.Relay.HeldPerAddress.SourceOf(remoteAddress).ToString())
            {
                // Used only if the tailnet has an identity provider and the device has no open login link.
                NewLoginId = authKey is null && services.Logins is not null ? "login_" + Identifiers.RandomBase32(16) : null,
                LoginExpiresAt = services.Clock.GetUtcNow() + (services.Logins?.Lifetime ?? TimeSpan.Zero),
                ResumeDeviceId = resumeDeviceId,
            };
            var outcome = await Ask(services.Tailnets, register);
            if (outcome is Rejection { Code: Contracts.Admin.ApiErrorCodes.NotFound } && resumeDeviceId is not null) return null;
            if (outcome is Rejection rejection)
            {
                // An internal error is no verdict on the device: the agent comes back later, as for a busy coordinator.
                if (rejection.Code is ControlErrorCodes.Unavailable or Contracts.Admin.ApiErrorCodes.Internal)
                    return Refuse(ControlErrorCodes.Unavailable, rejection.Message, RetryAfterMs);
                if (keyless) return WaitingForApproval();
                if (rejection.Code != Contracts.Admin.ApiErrorCodes.NotFound) return Refuse(rejection.Code, rejection.Message);
                // A key naming a tailnet that does not exist is just an invalid key: say nothing about tailnets.
                return authKey is not null
                    ? Refuse(ControlErrorCodes.AuthKeyUnknown, "the auth key is not valid for this tailnet")
                    : Refuse(ControlErrorCodes.TailnetUnknown, $"there is no tailnet '{Truncate(request.Tailnet, 80)}'");
            }
            var registration = (DeviceRegistration)outcome;
            var device = registration.Device;

            // A resumed device is this machine's in its tailnet, so the machine key was bound to it before it was
            // ever accepted; the binding is released only when the device is gone.
            if (resumeDeviceId is null)
            {
                var bound = await Ask(services.Machines, new BindMachine(machineHex, tailnetId, device.DeviceId));
                if (bound is not MachineBinding { } machineBinding || machineBinding.DeviceId != device.DeviceId)
                    return Refuse(ControlErrorCodes.Unavailable, $"the machine key could not be bound to device {device.DeviceId} ({Describe(bound)}); retry", RetryAfterMs);
            }
            var ready = await Ask(services.Devices, new InitializeDevice(device.DeviceId, tailnetId));
            if (ready is Rejection initFailed) return Refuse(initFailed.Code, initFailed.Message, initFailed.Code == ControlErrorCodes.Unavailable ? RetryAfterMs : 0);

            if (registration.Login is { } login && !device.IsActive && services.Logins is not null)
                return WaitingForLogin(await services.Logins.LinkFor(tailnetId, login.LoginId));
            return device.Status == DeviceStatus.Pending ? WaitingForApproval() : Accepted(device, tailnetId);
        }
        try
        {
            if (authKey is null && request.ResumeDeviceId.Length > 0)
            {
                // A reconnect: its tailnet checks the device is this machine's, and the machine index (whose
                // entity would have to be recovered from the journal, in a failover storm once per agent) is
                // not read. Any other answer than the device means the hint is stale: register without it.
                var resumed = await RegisterInTailnetAsync(request.ResumeTailnetId, keyless: false, resumeDeviceId: request.ResumeDeviceId);
                if (resumed is not null) return resumed;
            }

            var binding = await Ask(services.Machines, new LookupMachine(machineHex)) as MachineBinding;
            if (binding is not null && authKey is null)
            {
                // A reconnect without a key (and without a hint its tailnet took): the bound device, if its tailnet
                // still has it as this machine's.
                // If not, the binding is stale, whether the tailnet's release of it is still on its way (the
                // device was just deleted) or was lost: release it here, and go on as a machine never bound,
                // so that the answer does not depend on which of the two arrived first.
                var hintNamedIt = request.ResumeTailnetId == binding.TailnetId && request.ResumeDeviceId == binding.DeviceId;
                if (!hintNamedIt && await RegisterInTailnetAsync(binding.TailnetId, keyless: false, resumeDeviceId: binding.DeviceId) is { } reconnected)
                    return reconnected;
                await Ask(services.Machines, new UnbindMachine(machineHex, binding.DeviceId));
                binding = null;
            }
            if (binding is not null && authKey is not null && authKey.TailnetId != binding.TailnetId
                && await Ask(services.Tailnets, new GetDevice(binding.TailnetId, binding.DeviceId)) is Rejection { Code: Contracts.Admin.ApiErrorCodes.NotFound })
            {
                // Bound to a device that is gone (deleted, or its tailnet deleted): the tailnet's one release
                // of the binding was lost on its way to the index. Release it here, or this machine would be
                // refused by every other tailnet for good.
                await Ask(services.Machines, new UnbindMachine(machineHex, binding.DeviceId));
                binding = null;
            }
            // A first registration without a key, to wait for approval: whatever happens next, the answer says
            // nothing about whether the tailnet exists, takes such devices, or has room for more.
            var keyless = binding is null && authKey is null;
            string tailnetId;
            if (binding is not null)
            {
                tailnetId = binding.TailnetId;
                if (authKey is not null && authKey.TailnetId != tailnetId)
                    return Refuse(ControlErrorCodes.MachineInOtherTailnet, "this machine is registered in another tailnet; log out (or have it deleted) before joining another");
            }
            else if (authKey is not null)
            {
                tailnetId = authKey.TailnetId;
            }
            else if (request.Tailnet.Length > 0)
            {
                var found = await Ask(services.Directory, new FindTailnet(request.Tailnet));
                if (found is not TailnetEntry entry) return WaitingForApproval();
                tailnetId = entry.TailnetId;
            }
            else
            {
                return Refuse(ControlErrorCodes.InvalidRequest, "give an auth key, or name the tailnet to wait for an admin's approval");
            }
            return (await RegisterInTailnetAsync(tailnetId, keyless, resumeDeviceId: null))!;
        }
        catch (AskTimeoutException)
        {
            return Refuse(ControlErrorCodes.Unavailable, "the cluster did not answer in time; retry", RetryAfterMs);
        }
    }

    private static string StepOf(object message) => message switch
    {
        LookupMachine => "machine_lookup",
        UnbindMachine => "machine_release",
        GetDevice => "device_check",
        FindTailnet => "tailnet_find",
        RegisterDevice { ResumeDeviceId: not null } => "tailnet_resume",
        RegisterDevice => "tailnet_register",
        BindMachine => "machine_bind",
        InitializeDevice => "device_init",
        _ => message.GetType().Name,
    };

    /// <summary>Asks again, with the same message (every step is idempotent), until an answer other than "unavailable" or the deadline.</summary>
    private static async Task<object> AskUntil(IActorRef entity, object message, DateTimeOffset deadline, TimeProvider clock)
    {
        while (true)
        {
            try
            {
                var answer = await entity.Ask<object>(message, AttemptTimeout);
                if (answer is not Rejection { Code: ControlErrorCodes.Unavailable } || clock.GetUtcNow() > deadline) return answer;
            }
            catch (AskTimeoutException) when (clock.GetUtcNow() + AttemptTimeout <= deadline)
            {
                // Not answered: its shard may be moving to another node. Ask again.
            }
            await Task.Delay(TimeSpan.FromMilliseconds(200));
        }
    }

    private static RegistrationOutcome Accepted(DeviceEntry device, string tailnetId)
    {
        var result = new RegisterResult
        {
            Status = device.Status switch
            {
                DeviceStatus.Active => RegisterResult.Types.Status.Authorized,
                DeviceStatus.Pending => RegisterResult.Types.Status.PendingApproval,
                _ => RegisterResult.Types.Status.Refused,
            },
            DeviceId = device.DeviceId,
            TailnetId = tailnetId,
            Addresses = { device.Ipv4, device.Ipv6 },
            Name = device.Name,
        };
        if (device.KeyExpiry is { } expiry) result.KeyExpiry = Timestamp.FromDateTimeOffset(expiry);
        if (device.Status == DeviceStatus.Expired)
        {
            result.RefusalCode = ControlErrorCodes.DeviceExpired;
            result.RefusalMessage = TailnetRules.ExpiredDeviceMessage;
            return new RegistrationOutcome(result, null, null);
        }
        return new RegistrationOutcome(result, device.DeviceId, tailnetId);
    }

    /// <summary>
    /// The one answer to a registration without a key that is not (yet) an admitted device: no device,
    /// tailnet, address or name, and when to ask again. It is the same for a device that waits in a
    /// tailnet, a tailnet that does not exist or admits only keys, and a tailnet full of waiting devices.
    /// </summary>
    public static RegistrationOutcome WaitingForApproval() =>
        new(new RegisterResult { Status = RegisterResult.Types.Status.PendingApproval, RetryAfterMs = ApprovalPollMs }, null, null);

    /// <summary>The device waits for its person to open <paramref name="link"/> and sign in at the tailnet's identity provider.</summary>
    public static RegistrationOutcome WaitingForLogin(Uri link) =>
        new(new RegisterResult { Status = RegisterResult.Types.Status.PendingApproval, LoginUrl = link.AbsoluteUri, RetryAfterMs = LoginPollMs }, null, null);

    public static RegistrationOutcome Refuse(string code, string message, uint retryAfterMs = 0) =>
        new(new RegisterResult { Status = RegisterResult.Types.Status.Refused, RefusalCode = code, RefusalMessage = message, RetryAfterMs = retryAfterMs }, null, null);

    private static string Describe(object answer) => answer is Rejection r ? r.Message : answer.GetType().Name;

    public static string Truncate(string value, int max) => value.Length <= max ? value : value[..max];
}
