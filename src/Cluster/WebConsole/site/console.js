// Weft console: a small single-page client of the admin API (/api/v1). No framework and no build
// step; every value that comes from the API (device names from agents included) is put into the
// page as text, never as markup.

const keyStorage = "weft.apiKey";
const view = document.getElementById("view");
const statusLine = document.getElementById("status");
// Signed in with an API key (key), or as a person through the tailnet's identity provider (person:
// the session cookie does the rest, and changes carry X-Weft-Console so that no other site can make them).
const state = { key: sessionStorage.getItem(keyStorage), person: null, operator: false, tailnets: [], live: null };

// ------------------------------------------------------------------ helpers

/** Builds an element: h("td", { class: "x" }, "text", child). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElementNS(tag === "svg" || attributes.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "svg" || value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}
const s = (tag, attributes = {}, ...children) => h(tag, { ...attributes, svg: true }, ...children);

function say(message, isError = false) {
  statusLine.textContent = message;
  statusLine.className = isError ? "error" : "";
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? "http_" + status;
    this.issues = body?.issues ?? [];
  }
}

/** How a request proves who sends it: the API key, or the console session (its cookie goes by itself). */
function credentials(key = state.key) {
  return key ? { Authorization: "Bearer " + key } : { "X-Weft-Console": "1" };
}

async function api(path, { method = "GET", json, text, key = state.key } = {}) {
  const headers = credentials(key);
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (text !== undefined) { headers["Content-Type"] = "application/hujson"; body = text; }
  const response = await fetch("/api/v1" + path, { method, headers, body });
  const type = response.headers.get("Content-Type") ?? "";
  const payload = response.status === 204 ? null : type.startsWith("application/json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof payload === "object" ? payload : null);
  return payload;
}

const enc = encodeURIComponent;
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");

/** Runs an action from a button, with its outcome in the status line. */
async function act(what, action) {
  say(what + "…");
  try {
    const result = await action();
    say(what + ": done");
    return result;
  } catch (error) {
    say(`${what}: ${error.message}`, true);
    return undefined;
  }
}

// ------------------------------------------------------------------ sign-in

async function signIn(key) {
  const listing = await api("/tailnets", { key });
  state.key = key;
  sessionStorage.setItem(keyStorage, key);
  state.tailnets = listing.tailnets;
  try {
    await api("/cluster", { key });
    state.operator = true;
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "forbidden") throw error;
    state.operator = false;
  }
}

/** A console session from an earlier sign-in at the identity provider, if the browser holds one. */
async function resumeSession() {
  try {
    const session = await api("/session", { key: null });
    if (session.kind !== "person") return false;
    state.person = session;
    state.tailnets = (await api("/tailnets", { key: null })).tailnets;
    state.operator = false;
    return true;
  } catch {
    return false;
  }
}

async function signOut() {
  sessionStorage.removeItem(keyStorage);
  state.key = null;
  if (state.person) {
    state.person = null;
    await fetch("/admin/logout", { method: "POST", headers: credentials(null) }).catch(() => {});
  }
  stopLive();
  document.getElementById("nav").hidden = true;
  location.hash = "#/";
  renderSignIn();
}

function renderSignIn(problem) {
  stopLive();
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false", "aria-describedby": "api-key-help" });
  const form = h("form", {
    class: "signin",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await signIn(input.value.trim());
        say("");
        route();
      } catch (error) {
        renderSignIn(error.code === "unauthorized" ? "That key is not valid (or was revoked)." : error.message);
      }
    },
  },
  h("h2", {}, "Sign in"),
  h("p", { id: "api-key-help" }, "Paste an API key: an operator key administers every tailnet; a tailnet key administers its own."),
  h("label", { for: "api-key" }, "API key"), input,
  problem ? h("p", { role: "alert", class: "expired" }, problem) : null,
  h("p", {}, h("button", { class: "primary", type: "submit", id: "sign-in" }, "Sign in")));
  // Or as a person, at the tailnet's identity provider (a tailnet with one): owners, admins and auditors.
  const tailnet = h("input", { id: "sso-tailnet", autocomplete: "organization", spellcheck: "false" });
  const sso = h("form", {
    class: "signin",
    onsubmit: (event) => {
      event.preventDefault();
      if (tailnet.value.trim()) location.assign("/admin/login/" + enc(tailnet.value.trim()));
    },
  },
  h("h2", {}, "Sign in with your identity provider"),
  h("p", {}, "For owners, admins and auditors of a tailnet that signs its people in."),
  h("label", { for: "sso-tailnet" }, "Tailnet"), tailnet,
  h("p", {}, h("button", { type: "submit", id: "sso-sign-in" }, "Continue to sign-in")));
  view.replaceChildren(form, sso);
  input.focus();
}

// ------------------------------------------------------------------ routing

window.addEventListener("hashchange", () => route());
document.getElementById("sign-out").addEventListener("click", signOut);

async function route() {
  if (!state.key && !state.person && !(await resumeSession())) return renderSignIn();
  if (state.key && !state.tailnets.length && !state.operator) {
    try { await signIn(state.key); } catch { return renderSignIn("Your session ended; sign in again."); }
  }
  const nav = document.getElementById("nav");
  nav.hidden = false;
  document.getElementById("nav-cluster").hidden = !state.operator;
  document.getElementById("who").textContent = state.person ? `${state.person.email} (${state.person.role})` : state.operator ? "operator" : "tailnet key";
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  stopLive();
  try {
    if (parts[0] === "tailnets" && parts[1]) await renderTailnet(parts[1], parts[2] || "devices");
    else if (parts[0] === "cluster") await renderCluster();
    else if (parts[0] === "api-keys") await renderApiKeys();
    else await renderTailnets();
  } catch (error) {
    if (error.code === "unauthorized") return renderSignIn("Your key is no longer valid; sign in again.");
    view.replaceChildren(h("h2", {}, error.code === "not_found" ? "Not found" : "Something went wrong"),
      h("p", { role: "alert", id: "page-error" }, error.message));
  }
  view.focus({ preventScroll: true });
}

// ------------------------------------------------------------------ tailnets

async function renderTailnets() {
  const listing = await api("/tailnets");
  state.tailnets = listing.tailnets;
  if (!state.operator && state.tailnets.length === 1) {
    location.replace("#/tailnets/" + enc(state.tailnets[0].name));
    return;
  }
  const rows = state.tailnets.map((t) => h("tr", {},
    h("td", {}, h("a", { href: "#/tailnets/" + enc(t.name) }, t.name)), h("td", {}, h("code", {}, t.id)), h("td", {}, when(t.createdAt))));
  const name = h("input", { id: "new-tailnet-name", required: true, pattern: "[a-z0-9][a-z0-9\\-]*", "aria-label": "New tailnet name" });
  refreshWhileShown(renderTailnets);
  view.replaceChildren(
    h("h2", {}, "Tailnets"),
    state.operator ? h("form", {
      class: "inline",
      onsubmit: async (event) => {
        event.preventDefault();
        const created = await act("Creating tailnet " + name.value, () => api("/tailnets", { method: "POST", json: { name: name.value } }));
        if (created) location.hash = "#/tailnets/" + enc(created.name);
      },
    }, h("label", {}, "Name", name), h("button", { class: "primary", type: "submit", id: "create-tailnet" }, "Create tailnet")) : null,
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Id"), h("th", {}, "Created"))), h("tbody", { id: "tailnets" }, rows)));
}

const tabs = [["devices", "Devices"], ["mesh", "Mesh"], ["keys", "Auth keys"], ["users", "Users"], ["policy", "Policy"], ["settings", "Settings"]];

async function renderTailnet(tailnetName, tab) {
  const tailnet = await api("/tailnets/" + enc(tailnetName));
  const base = "#/tailnets/" + enc(tailnet.name);
  const body = h("section", { id: "tab-" + tab, "aria-labelledby": "tab-title" });
  view.replaceChildren(
    h("h2", {}, tailnet.name, " ", h("span", { class: "muted mono" }, tailnet.id)),
    h("nav", { class: "tabs", "aria-label": "Tailnet" }, tabs.map(([id, label]) => h("a", { href: `${base}/${id}`, "aria-current": id === tab ? "page" : null }, label))),
    body);
  const render = { devices: tabDevices, mesh: tabMesh, keys: tabAuthKeys, users: tabUsers, policy: tabPolicy, settings: tabSettings }[tab];
  if (!render) throw new ApiError(404, { code: "not_found", message: "no such page: " + tab });
  await render(tailnet, body);
}

// ------------------------------------------------------------------ live updates

/**
 * Reads the tailnet's server-sent events (GET …/events) with fetch, which can send the API key
 * (EventSource cannot), and calls onMesh with each new graph. Reconnects after a failure.
 */
function startLive(tailnet, onMesh) {
  stopLive();
  const controller = new AbortController();
  state.live = controller;
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const response = await fetch(`/api/v1/tailnets/${enc(tailnet.id)}/events`, { headers: credentials(), signal: controller.signal });
        if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const message = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(message)?.[1];
            const data = message.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (event === "mesh") onMesh(JSON.parse(data));
            if (event === "gone") { say("This tailnet was deleted.", true); return; }
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error.code === "unauthorized" || error.code === "not_found") { say(error.message, true); return; }
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  })();
}

function stopLive() {
  state.live?.abort();
  state.live = null;
  clearTimeout(state.refresh);
}

/** Pages without an event stream (the tailnet list, the cluster) are read again every few seconds while shown. */
function refreshWhileShown(render) {
  const shown = location.hash;
  state.refresh = setTimeout(async () => {
    if (location.hash !== shown || !state.key) return;
    // Never under someone's hands: a form being filled in waits for the next look.
    const typing = [...view.querySelectorAll("input, select, textarea")].some((e) => e === document.activeElement || (e.type !== "checkbox" && e.value));
    if (typing) return refreshWhileShown(render);
    try {
      await render();
    } catch {
      // A failed look (the cluster busy, a node restarting) keeps looking; a render that got far enough scheduled one already.
      clearTimeout(state.refresh);
      refreshWhileShown(render);
    }
  }, 5000);
}

// ------------------------------------------------------------------ devices

function statusOf(device) {
  if (device.status !== "active") return device.status; // pending, expired
  return device.online ? "online" : "offline";
}

function deviceRow(tailnet, device) {
  const path = `/tailnets/${enc(tailnet.id)}/devices/${enc(device.id)}`;
  const label = statusOf(device);
  const routes = device.routes ? [...device.routes.enabled, ...(device.routes.advertised.filter((r) => !device.routes.enabled.includes(r)).map((r) => r + " (awaiting approval)"))] : [];
  return h("tr", { "data-device": device.id, "data-hostname": device.hostname },
    h("td", {}, h("strong", {}, device.name), h("br"), h("span", { class: "muted" }, device.user ?? (device.tags.length ? "tagged" : ""))),
    h("td", {}, h("span", { class: "badge " + label, "data-status": label }, label)),
    h("td", { class: "mono" }, device.addresses.join("\n")),
    h("td", {}, device.tags.join(", ")),
    h("td", {}, device.os, h("br"), h("span", { class: "muted" }, device.agentVersion)),
    h("td", {}, device.keyExpiry ? when(device.keyExpiry) : "no expiry"),
    h("td", { class: "mono" }, routes.join("\n")),
    h("td", {},
      device.status === "pending" ? h("button", { onclick: () => act("Approving " + device.name, () => api(path + "/approve", { method: "POST" })) }, "Approve") : null,
      " ",
      h("button", { "data-action": "rename", onclick: async () => {
        const name = prompt("New name for " + device.name, device.name);
        if (name) await act("Renaming " + device.name, () => api(path + "/rename", { method: "POST", json: { name } }));
      } }, "Rename"),
      " ",
      h("button", { "data-action": "tags", onclick: async () => {
        const tags = prompt("Tags (comma-separated, tag:name)", device.tags.join(", "));
        if (tags !== null) await act("Tagging " + device.name, () => api(path + "/tags", { method: "POST", json: { tags: tags.split(",").map((t) => t.trim()).filter(Boolean) } }));
      } }, "Tags"),
      " ",
      device.status === "active" ? h("button", { "data-action": "expire", onclick: async () => {
        if (confirm(`Expire ${device.name}? It must log in again.`)) await act("Expiring " + device.name, () => api(path + "/expire", { method: "POST" }));
      } }, "Expire") : null,
      " ",
      h("button", { class: "danger", "data-action": "delete", onclick: async () => {
        if (confirm(`Delete ${device.name}?`)) await act("Deleting " + device.name, () => api(path, { method: "DELETE" }));
      } }, "Delete")));
}

async function tabDevices(tailnet, body) {
  const tbody = h("tbody", { id: "devices" });
  const show = (mesh) => {
    tbody.replaceChildren(...mesh.devices.map((d) => deviceRow(tailnet, d)));
    if (!mesh.devices.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No devices yet: create an auth key and run weft-agent up.")));
  };
  body.replaceChildren(h("h3", { id: "tab-title" }, "Devices"),
    h("p", { class: "muted" }, "Live: devices appear, go online and offline as it happens."),
    h("table", {}, h("thead", {}, h("tr", {}, ["Device", "State", "Addresses", "Tags", "OS / agent", "Key expiry", "Routes", "Actions"].map((c) => h("th", { scope: "col" }, c)))), tbody));
  show(await api(`/tailnets/${enc(tailnet.id)}/mesh`));
  startLive(tailnet, show);
}

// ------------------------------------------------------------------ mesh graph

function drawMesh(mesh) {
  const size = 640, center = size / 2, radius = mesh.devices.length > 1 ? size / 2 - 90 : 0;
  const position = new Map(mesh.devices.map((d, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, mesh.devices.length) - Math.PI / 2;
    return [d.id, [center + radius * Math.cos(angle), center + radius * Math.sin(angle)]];
  }));
  const edges = mesh.links.map((l) => {
    const [x1, y1] = position.get(l.a), [x2, y2] = position.get(l.b);
    return s("line", { x1, y1, x2, y2, class: l.path, "data-link": `${l.a} ${l.b}` }, s("title", {}, `${l.path}`));
  });
  const nodes = mesh.devices.map((d) => {
    const [x, y] = position.get(d.id);
    const label = statusOf(d);
    return s("g", { "data-device": d.id, "data-status": label },
      s("circle", { cx: x, cy: y, r: 14, class: label }, s("title", {}, `${d.name}: ${label}`)),
      s("text", { x, y: y + 30, "text-anchor": "middle" }, d.name));
  });
  return s("svg", { class: "mesh", id: "mesh", viewBox: `0 0 ${size} ${size}`, role: "img", "aria-label": `Mesh of ${mesh.devices.length} devices and ${mesh.links.length} links` },
    s("g", {}, edges), s("g", {}, nodes));
}

async function tabMesh(tailnet, body) {
  const holder = h("div");
  const summary = h("p", { id: "mesh-summary" });
  const show = (mesh) => {
    holder.replaceChildren(drawMesh(mesh));
    const online = mesh.devices.filter((d) => statusOf(d) === "online").length;
    summary.textContent = mesh.linksComplete === false
      ? `${mesh.devices.length} devices (${online} online); the pairs the policy allows are too many to draw.`
      : `${mesh.devices.length} devices (${online} online), ${mesh.links.length} links allowed by the policy.`;
  };
  body.replaceChildren(h("h3", { id: "tab-title" }, "Mesh"), summary,
    h("p", { class: "legend" },
      h("span", {}, h("span", { class: "swatch direct" }), "direct (both ends report UDP endpoints)"),
      h("span", {}, h("span", { class: "swatch relayed" }), "relayed"),
      h("span", {}, h("span", { class: "swatch offline" }), "an end is offline")),
    holder);
  show(await api(`/tailnets/${enc(tailnet.id)}/mesh`));
  startLive(tailnet, show);
}

// ------------------------------------------------------------------ auth keys and users

async function tabAuthKeys(tailnet, body) {
  const base = `/tailnets/${enc(tailnet.id)}/auth-keys`;
  const { authKeys } = await api(base);
  const reusable = h("input", { type: "checkbox", id: "auth-key-reusable" });
  const ephemeral = h("input", { type: "checkbox", id: "auth-key-ephemeral" });
  const tags = h("input", { id: "auth-key-tags", placeholder: "tag:server" });
  const description = h("input", { id: "auth-key-description" });
  const created = h("div", { id: "created-key", "aria-live": "polite" });
  body.replaceChildren(h("h3", { id: "tab-title" }, "Auth keys"),
    h("form", {
      class: "inline",
      onsubmit: async (event) => {
        event.preventDefault();
        const json = { reusable: reusable.checked, ephemeral: ephemeral.checked, description: description.value };
        const tagList = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
        if (tagList.length) json.tags = tagList;
        const result = await act("Creating an auth key", () => api(base, { method: "POST", json }));
        if (!result) return;
        await tabAuthKeys(tailnet, body);
        body.querySelector("#created-key").replaceChildren(h("p", {}, "The key (shown only now):"), h("p", { class: "secret mono", id: "new-auth-key" }, result.key));
      },
    },
    h("label", {}, "Reusable", reusable), h("label", {}, "Ephemeral", ephemeral), h("label", {}, "Tags", tags), h("label", {}, "Description", description),
    h("button", { class: "primary", type: "submit", id: "create-auth-key" }, "Create auth key")),
    created,
    h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Description", "Reusable", "Ephemeral", "Tags", "Uses", "Expires", "State", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, authKeys.map((k) => h("tr", { "data-auth-key": k.id },
        h("td", { class: "mono" }, k.id), h("td", {}, k.description), h("td", {}, k.reusable ? "yes" : "no"), h("td", {}, k.ephemeral ? "yes" : "no"),
        h("td", {}, k.tags.join(", ")), h("td", {}, k.uses), h("td", {}, when(k.expiresAt)),
        h("td", {}, k.revoked ? "revoked" : k.expired ? "expired" : "valid"),
        h("td", {}, k.revoked ? null : h("button", { class: "danger", onclick: async () => {
          await act("Revoking " + k.id, () => api(`${base}/${enc(k.id)}`, { method: "DELETE" }));
          await tabAuthKeys(tailnet, body);
        } }, "Revoke")))))));
}

async function tabUsers(tailnet, body) {
  const base = `/tailnets/${enc(tailnet.id)}/users`;
  const { users } = await api(base);
  const name = h("input", { id: "new-user-name", required: true });
  body.replaceChildren(h("h3", { id: "tab-title" }, "Users"),
    h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      if (await act("Adding " + name.value, () => api(base, { method: "POST", json: { name: name.value } }))) await tabUsers(tailnet, body);
    } }, h("label", {}, "Name (the policy's user name, e.g. alice@example.com)", name), h("button", { class: "primary", type: "submit" }, "Add user")),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Id"), h("th", {}, "Created"), h("th", {}, ""))),
      h("tbody", {}, users.map((u) => h("tr", {}, h("td", {}, u.name), h("td", { class: "mono" }, u.id), h("td", {}, when(u.createdAt)),
        h("td", {}, h("button", { class: "danger", onclick: async () => {
          if (confirm("Remove " + u.name + "?") && await act("Removing " + u.name, () => api(`${base}/${enc(u.id)}`, { method: "DELETE" })) !== undefined) await tabUsers(tailnet, body);
        } }, "Remove")))))));
}

// ------------------------------------------------------------------ policy

async function tabPolicy(tailnet, body) {
  const base = `/tailnets/${enc(tailnet.id)}/policy`;
  const text = await api(base);
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const editor = h("textarea", { id: "policy-text", spellcheck: "false", "aria-label": "Policy (HuJSON)", "aria-describedby": "policy-result" });
  editor.value = text;
  const result = h("div", { id: "policy-result", "aria-live": "polite" });
  let timer, generation = 0;

  const numberLines = (errorLines = new Set()) => {
    const count = editor.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: count }, (_, i) => h("div", { class: errorLines.has(i + 1) ? "has-error" : null, "data-line": i + 1 }, i + 1)));
    gutter.scrollTop = editor.scrollTop;
  };
  const showIssues = (error) => {
    const issues = error.issues ?? [];
    numberLines(new Set(issues.map((i) => i.line)));
    result.replaceChildren(h("ul", { class: "policy-errors" }, issues.length
      ? issues.map((i) => h("li", { "data-line": i.line, "data-column": i.column }, `Line ${i.line}, column ${i.column}${i.path ? " (" + i.path + ")" : ""}: ${i.message}`))
      : h("li", {}, error.message)));
  };
  const validate = async () => {
    const mine = ++generation;
    try {
      const checked = await api(base + "/validate", { method: "POST", text: editor.value });
      if (mine !== generation) return;
      numberLines();
      result.replaceChildren(h("p", { class: "policy-ok" }, `Valid: ${checked.rules} rule(s), ${checked.tests} test(s) pass.`));
    } catch (error) {
      if (mine === generation) showIssues(error);
    }
  };
  editor.addEventListener("input", () => { numberLines(); clearTimeout(timer); timer = setTimeout(validate, 300); });
  editor.addEventListener("scroll", () => { gutter.scrollTop = editor.scrollTop; });

  const src = h("input", { id: "test-src", placeholder: "alice@example.com or tag:web" });
  const dst = h("input", { id: "test-dst", placeholder: "tag:db:5432 or 100.64.0.2:22" });
  const proto = h("input", { id: "test-proto", placeholder: "tcp", size: 5 });
  const verdict = h("p", { id: "test-result", "aria-live": "polite" });

  body.replaceChildren(h("h3", { id: "tab-title" }, "Policy"),
    h("p", { class: "muted" }, "Tailscale's HuJSON policy format. It is checked as you type; saving runs its tests first, and a refused policy leaves the one in force unchanged."),
    h("div", { class: "editor" }, gutter, editor), result,
    h("p", {}, h("button", { class: "primary", id: "save-policy", onclick: async () => {
      try {
        const saved = await api(base, { method: "PUT", text: editor.value });
        say(`Policy saved (version ${saved.version}).`);
        numberLines();
      } catch (error) {
        say("Policy not saved: " + error.message, true);
        showIssues(error);
      }
    } }, "Save policy")),
    h("h4", {}, "Test runner"),
    h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const json = { src: src.value, dst: dst.value };
        if (proto.value) json.proto = proto.value;
        const answer = await api(base + "/test", { method: "POST", json });
        verdict.textContent = (answer.allowed ? "Allowed" : "Denied") + (answer.rule !== undefined && answer.rule !== null ? ` by rule ${answer.rule}` : "") + ": " + answer.explanation;
        verdict.className = answer.allowed ? "policy-ok" : "expired";
      } catch (error) {
        verdict.textContent = error.message;
        verdict.className = "expired";
      }
    } }, h("label", {}, "Source", src), h("label", {}, "Destination", dst), h("label", {}, "Protocol", proto), h("button", { type: "submit", id: "run-test" }, "Check")),
    verdict);
  numberLines();
}

// ------------------------------------------------------------------ settings

async function tabSettings(tailnet, body) {
  const settings = tailnet.settings;
  const expiry = h("input", { id: "setting-expiry", type: "number", min: 1, max: 180, value: settings.nodeKeyExpiryDays });
  const suffix = h("input", { id: "setting-suffix", value: settings.dnsSuffix });
  const ephemeral = h("input", { id: "setting-ephemeral", type: "number", min: 0, value: settings.ephemeralTimeoutSeconds });
  const keyless = h("input", { id: "setting-keyless", type: "checkbox", checked: settings.keylessRegistration });
  body.replaceChildren(h("h3", { id: "tab-title" }, "Settings"),
    h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      await act("Saving settings", () => api(`/tailnets/${enc(tailnet.id)}`, { method: "PATCH", json: {
        nodeKeyExpiryDays: Number(expiry.value), dnsSuffix: suffix.value, ephemeralTimeoutSeconds: Number(ephemeral.value), keylessRegistration: keyless.checked } }));
    } },
    h("label", {}, "Node key expiry (days)", expiry), h("label", {}, "MagicDNS suffix", suffix),
    h("label", {}, "Ephemeral device timeout (s)", ephemeral), h("label", {}, "Devices may join without a key (pending approval)", keyless),
    h("button", { class: "primary", type: "submit" }, "Save settings")));
}

// ------------------------------------------------------------------ API keys and the cluster

async function renderApiKeys() {
  const { apiKeys } = await api("/api-keys");
  const description = h("input", { id: "api-key-description" });
  const scope = h("select", { id: "api-key-scope" },
    state.operator ? h("option", { value: "operator" }, "operator") : null,
    state.tailnets.map((t) => h("option", { value: "tailnet:" + t.id }, "tailnet " + t.name)));
  const created = h("div", { "aria-live": "polite" });
  view.replaceChildren(h("h2", {}, "API keys"),
    h("form", { class: "inline", onsubmit: async (event) => {
      event.preventDefault();
      const [kind, tailnet] = scope.value.split(":");
      const result = await act("Issuing an API key", () => api("/api-keys", { method: "POST", json: kind === "operator" ? { scope: "operator", description: description.value } : { scope: "tailnet", tailnet, description: description.value } }));
      if (!result) return;
      await renderApiKeys();
      view.querySelector("[aria-live]").replaceChildren(h("p", {}, "The key (shown only now):"), h("p", { class: "secret mono", id: "new-api-key" }, result.key));
    } }, h("label", {}, "Scope", scope), h("label", {}, "Description", description), h("button", { class: "primary", type: "submit" }, "Issue API key")),
    created,
    h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Scope", "Tailnet", "Description", "Created", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, apiKeys.map((k) => h("tr", {}, h("td", { class: "mono" }, k.id), h("td", {}, k.scope), h("td", { class: "mono" }, k.tailnet ?? ""),
        h("td", {}, k.description), h("td", {}, when(k.createdAt)),
        h("td", {}, h("button", { class: "danger", onclick: async () => {
          if (confirm("Revoke " + k.id + "?") && await act("Revoking " + k.id, () => api("/api-keys/" + enc(k.id), { method: "DELETE" })) !== undefined) await renderApiKeys();
        } }, "Revoke")))))));
}

async function renderCluster() {
  const cluster = await api("/cluster");
  const types = [...new Set(cluster.nodes.flatMap((n) => n.shards.map((c) => c.entityType)))].sort();
  refreshWhileShown(renderCluster);
  view.replaceChildren(h("h2", {}, "Cluster"),
    h("p", {}, "Leader: ", h("code", {}, cluster.leader ?? "none")),
    h("table", { id: "cluster-nodes" },
      h("thead", {}, h("tr", {}, h("th", {}, "Node"), h("th", {}, "Status"), h("th", {}, "Agents"), types.map((t) => h("th", { scope: "col" }, t + " shards / entities")))),
      h("tbody", {}, cluster.nodes.map((n) => h("tr", { "data-node": n.address },
        h("td", { class: "mono" }, n.address), h("td", {}, n.status + (n.reachable ? "" : " (unreachable)")), h("td", {}, n.agents ?? "?"),
        types.map((t) => {
          const c = n.shards.find((x) => x.entityType === t);
          return h("td", {}, c ? `${c.shards} / ${c.entities}` : "0 / 0");
        }))))),
    h("p", { class: "muted" }, "Metrics for alerting: ", h("a", { href: "/metrics" }, "/metrics"), " (Prometheus), health: ", h("a", { href: "/healthz/ready" }, "/healthz/ready"), "."));
}

route();
