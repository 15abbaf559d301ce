// fleetwatch dashboard: the registry's state, kept live by its change feed (/v1/events).
// Plain ES module, no build step. A token comes from #token=... or the form, kept in
// sessionStorage; requests send it as a bearer token.

const state = { instances: new Map(), load: new Map(), history: new Map(), latency: new Map(),
                events: [], selected: null, index: 0 };
const $ = (id) => document.getElementById(id);
let token = new URLSearchParams(location.hash.slice(1)).get("token")
  || sessionStorage.getItem("fleetwatch-token") || "";
if (token) sessionStorage.setItem("fleetwatch-token", token);

function headers() { return token ? { Authorization: `Bearer ${token}` } : {}; }

async function api(path) {
  const reply = await fetch(path, { headers: headers() });
  if (reply.status === 401 || reply.status === 403) { askToken(); throw new Error("token needed"); }
  if (!reply.ok) throw new Error(`${path}: HTTP ${reply.status}`);
  return reply.json();
}

function askToken() {
  const form = $("login");
  form.hidden = false;
  $("connection").textContent = "a registry token is needed to read";
  form.onsubmit = (e) => { e.preventDefault(); token = $("token").value;
    sessionStorage.setItem("fleetwatch-token", token); form.hidden = true; start(); };
}

const key = (i) => `${i.service}/${i.instance_id}`;

async function loadAll() {
  const { index, services } = await api("/v1/services");
  state.index = index;
  state.instances.clear();
  for (const service of Object.keys(services)) {
    const body = await api(`/v1/services/${encodeURIComponent(service)}/instances`);
    for (const instance of body.instances) state.instances.set(key(instance), instance);
  }
  render();
}

async function pollLoadAndSlos() {
  const services = new Set([...state.instances.values()].map((i) => i.service));
  for (const service of services) {
    try {
      const { load } = await api(`/v1/services/${encodeURIComponent(service)}/load`);
      for (const [id, figures] of Object.entries(load)) state.load.set(`${service}/${id}`, figures);
      // Check latency trends: the monitor writes "... in 1.2ms" on every check; statuses
      // themselves come from the change feed, not from this poll.
      const { instances } = await api(`/v1/services/${encodeURIComponent(service)}/instances`);
      for (const i of instances) {
        const found = /in ([0-9.]+)ms/.exec(i.last_check_output || "");
        if (!found) continue;
        const points = state.latency.get(key(i)) || [];
        points.push(Number(found[1]));
        state.latency.set(key(i), points.slice(-30));
      }
    } catch (e) { /* keep the last figures */ }
    const routable = [...state.instances.values()]
      .filter((i) => i.service === service && (i.status === "available" || i.status === "degraded")).length;
    const points = state.history.get(service) || [];
    points.push(routable);
    state.history.set(service, points.slice(-60));
  }
  try { renderSlos((await api("/v1/slo")).slos); } catch (e) { /* no objectives readable */ }
  render();
}

async function follow() {
  // EventSource cannot send a bearer token, so the stream is read with fetch.
  const reply = await fetch(`/v1/events?index=${state.index}`, { headers: headers() });
  if (!reply.ok) throw new Error(`events: HTTP ${reply.status}`);
  $("connection").textContent = "live";
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the change feed closed");
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      handle(block);
    }
  }
}

function handle(block) {
  let type = "message"; let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) type = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (type === "reset") { state.index = payload.index; loadAll(); return; }
  if (type === "error") return;
  state.index = payload.index;
  const k = `${payload.service}/${payload.instance_id}`;
  if (payload.type === "deregistered" || payload.type === "evicted") state.instances.delete(k);
  else if (payload.instance) state.instances.set(k, payload.instance);
  state.events.unshift(payload);
  state.events = state.events.slice(0, 50);
  render();
}

function spark(points, label = "routable instances over the last minute") {
  if (!points || points.length < 2) return "";
  const max = Math.max(1, ...points);
  const step = 100 / (points.length - 1);
  const path = points.map((p, n) => `${(n * step).toFixed(1)},${(22 - (p / max) * 20).toFixed(1)}`).join(" ");
  return `<svg class="spark" viewBox="0 0 100 24" preserveAspectRatio="none" role="img"
    aria-label="${label}"><polyline fill="none" stroke="#0969da"
    stroke-width="1.5" points="${path}"/></svg>`;
}

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function render() {
  const byService = new Map();
  for (const instance of state.instances.values()) {
    if (!byService.has(instance.service)) byService.set(instance.service, []);
    byService.get(instance.service).push(instance);
  }
  const deps = new Set();
  for (const instance of state.instances.values())
    for (const d of (instance.metadata?.depends_on || "").split(",").map((s) => s.trim()).filter(Boolean))
      if (!byService.has(d)) deps.add(d);
  const parts = [];
  for (const [service, instances] of [...byService.entries()].sort()) {
    instances.sort((a, b) => a.instance_id.localeCompare(b.instance_id));
    const rows = instances.map((i) => {
      const load = state.load.get(key(i)) || {};
      const busy = load.running ?? load.busy_slots;
      const figures = busy === undefined ? "" : `<span class="load">${busy} running, ${load.waiting ?? 0} waiting</span>`;
      return `<button class="instance" role="listitem" data-key="${escape(key(i))}"
        aria-pressed="${state.selected === key(i)}"
        aria-label="${escape(i.instance_id)}: ${escape(i.status)}">
        <span>${escape(i.instance_id)} ${figures}</span>
        <span class="latency">${spark(state.latency.get(key(i)), "check latency, last minute")}</span>
        <span class="status status-${escape(i.status)}" data-status="${escape(i.status)}">${escape(i.status)}</span>
      </button>`;
    });
    parts.push(`<div class="service" data-service="${escape(service)}" role="group" aria-label="service ${escape(service)}">
      <h3><span>${escape(service)}</span><span class="load">${instances.length} instance(s)</span></h3>
      ${spark(state.history.get(service))}${rows.join("")}</div>`);
  }
  for (const d of [...deps].sort())
    parts.push(`<div class="service dependency" data-service="${escape(d)}" role="group"
      aria-label="dependency ${escape(d)}"><h3><span>${escape(d)}</span><span class="load">dependency</span></h3></div>`);
  $("topology").innerHTML = parts.join("") || "<p>No instances registered.</p>";
  for (const button of document.querySelectorAll(".instance"))
    button.addEventListener("click", () => { state.selected = button.dataset.key; render(); });
  drawEdges(byService);
  renderDetails();
  $("events").innerHTML = state.events.map((e) => `<li><time>${new Date(e.at * 1000).toLocaleTimeString()}</time>
    ${escape(e.type)} ${escape(e.service)}/${escape(e.instance_id)}
    ${e.instance ? `→ <span class="status-${escape(e.instance.status)}">${escape(e.instance.status)}</span>` : ""}
    ${e.reason ? `<span class="load">(${escape(e.reason)})</span>` : ""}</li>`).join("");
}

function drawEdges(byService) {
  const svg = $("edges");
  const section = $("topology-section").getBoundingClientRect();
  const lines = [];
  for (const [service, instances] of byService) {
    const deps = new Set(instances.flatMap((i) => (i.metadata?.depends_on || "").split(",").map((s) => s.trim()).filter(Boolean)));
    const from = document.querySelector(`[data-service="${CSS.escape(service)}"]`);
    for (const d of deps) {
      const to = document.querySelector(`[data-service="${CSS.escape(d)}"]`);
      if (!from || !to) continue;
      const a = from.getBoundingClientRect(), b = to.getBoundingClientRect();
      lines.push(`<line x1="${a.left + a.width / 2 - section.left}" y1="${a.top + a.height / 2 - section.top}"
        x2="${b.left + b.width / 2 - section.left}" y2="${b.top + b.height / 2 - section.top}"
        stroke="#8c959f" stroke-dasharray="4 3" stroke-width="1.5"/>`);
    }
  }
  svg.innerHTML = lines.join("");
}

function renderDetails() {
  const i = state.selected && state.instances.get(state.selected);
  if (!i) return;
  const load = state.load.get(key(i)) || {};
  $("details").innerHTML = `<dl>
    <dt>instance</dt><dd>${escape(key(i))}</dd><dt>address</dt><dd>${escape(i.url || `${i.host}:${i.port}`)}</dd>
    <dt>status</dt><dd class="status-${escape(i.status)}">${escape(i.status)}</dd>
    <dt>version</dt><dd>${escape(i.version || "-")}</dd><dt>last check</dt><dd>${escape(i.last_check_output || "-")}</dd>
    <dt>load</dt><dd>${escape(Object.entries(load).map(([k, v]) => `${k}=${v}`).join(", ") || "-")}</dd></dl>`;
}

function renderSlos(slos) {
  if (!slos.length) { $("slos").textContent = "No objectives configured."; return; }
  const pct = (v) => (v === null || v === undefined ? "-" : `${(v * 100).toFixed(3)}%`);
  $("slos").innerHTML = `<table><thead><tr><th>service</th><th>availability</th><th>requests ok</th>
    <th>budget left</th><th>burn 1h</th><th>alert</th></tr></thead><tbody>${slos.map((s) => `<tr>
    <td>${escape(s.service)}</td><td>${pct(s.availability)} / ${pct(s.objective)}</td>
    <td>${pct(s.request_success)}</td>
    <td>${pct(s.error_budget_remaining)}</td><td>${s.burn_rates["1h"] ?? "-"}</td>
    <td>${s.alerts.fast_burn ? '<span class="alert">fast burn</span>' : s.alerts.slow_burn ? '<span class="alert">slow burn</span>' : "ok"}</td>
    </tr>`).join("")}</tbody></table>`;
}

function renderDeployments({ deployments, controller }) {
  if (!deployments.length) { $("deployments").textContent = "No deployments."; return; }
  const leader = controller ? `controller: ${escape(controller.holder)} (epoch ${controller.epoch})`
    : "controller: none leads";
  $("deployments").innerHTML = `<table><thead><tr><th>service</th><th>revision</th><th>version</th>
    <th>updated</th><th>available</th><th>phase</th><th>progress</th></tr></thead><tbody>${deployments.map((d) => {
    const p = d.progress;
    const phase = d.paused ? "paused" : p.phase;
    return `<tr data-deployment="${escape(d.spec.service)}"><td>${escape(d.spec.service)}</td>
    <td>${d.revision}</td><td>${escape(d.spec.version)}</td>
    <td>${p.updated}/${d.spec.replicas}</td><td>${p.available}</td>
    <td class="phase phase-${escape(phase)}">${escape(phase)}</td>
    <td>${escape(p.note || p.message || "")}</td></tr>`; }).join("")}</tbody></table>
    <p class="leader">${leader}</p>`;
}

let followingDeployments = false;

async function followDeployments() {
  // The deployment feed is a blocking query of its own: each change wakes it at once.
  if (followingDeployments) return;
  followingDeployments = true;
  let index = 0;
  for (;;) {
    try {
      const body = await api(`/v1/deployments${index ? `?index=${index}&wait=30s` : ""}`);
      index = body.index;
      renderDeployments(body);
    } catch (error) {
      if (error.message === "token needed") { followingDeployments = false; return; }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

async function start() {
  followDeployments();
  for (;;) {
    try {
      await loadAll();
      await pollLoadAndSlos();
      await follow();
    } catch (error) {
      $("connection").textContent = `reconnecting: ${error.message}`;
      if (error.message === "token needed") return;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

setInterval(() => { pollLoadAndSlos().catch(() => {}); }, 2000);
window.addEventListener("resize", () => render());
start();
