// The pool explorer of `pie-retriever serve` (docs/explorer.md). Plain JS; the key stays in sessionStorage, never in a URL.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_SLOT = "pie-explorer-key";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
  "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363"];
const state = { index: null, map: null, mapDirty: true, view: "playground" };
window.pieTimings = { roundTrips: [] };

function key() { return sessionStorage.getItem(KEY_SLOT) || ""; }

async function api(path, body, method) {
  const opts = { method: method || (body === undefined ? "GET" : "POST"), headers: { Authorization: "Bearer " + key() } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const reply = await fetch(path, opts);
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    let detail = data.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => (d.loc || []).slice(1).join(".") + ": " + d.msg).join("; ");
    const err = new Error(`${reply.status}: ${detail || reply.statusText}`);
    err.status = reply.status;
    throw err;
  }
  return data;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text) { $("status").textContent = text; }

async function loadIndexes() {
  if (!key()) { setStatus("enter an API key"); return; }
  try {
    const data = await api("/v1/indexes");
    const select = $("index");
    select.replaceChildren(...data.indexes.map((ix) => { const o = el("option", "", `${ix.name} (${ix.size})`); o.value = ix.name; return o; }));
    state.index = data.indexes.length ? data.indexes[0].name : null;
    const ix = data.indexes[0];
    setStatus(ix ? `${ix.size} demonstrations, ${ix.tasks} tasks, ${ix.model}` : "no index served");
    state.mapDirty = true;
    if (state.view === "map" || state.view === "edit") await showMap();
  } catch (e) { setStatus(e.message); }
}

// ---- playground ----
function options() {
  const body = { k: Math.max(1, Math.min(20, parseInt($("pg-k").value, 10) || 4)) };
  const flt = $("pg-filter").value.trim();
  if (flt) body.filter = JSON.parse(flt);
  if ($("pg-cw-on").checked) body.content_weight = parseFloat($("pg-cw").value);
  return body;
}

function renderHits(list, hits, queryTask) {
  list.replaceChildren(...hits.map((h) => {
    const li = el("li");
    const task = (h.metadata && h.metadata.task) || "";
    li.dataset.id = h.id;
    li.dataset.task = task;
    li.dataset.score = h.score;
    const head = el("div", "hit-head");
    head.append(el("span", "task" + (queryTask && task === queryTask ? " match" : ""), task || "(no task)"),
      el("span", "score", h.score.toFixed(3)), el("span", "hit-id", h.id));
    li.append(head, el("span", "instr", h.instruction));
    return li;
  }));
}

function renderChat(messages) {
  $("prompt-chat").replaceChildren(...(messages || []).map((m) => {
    const div = el("div", "msg " + m.role);
    div.append(el("b", "", m.role), document.createTextNode(m.content));
    return div;
  }));
}

async function runPlayground(event) {
  if (event) event.preventDefault();
  const query = $("pg-query").value.trim();
  if (!query || !state.index) return;
  $("pg-error").hidden = true;
  let body;
  try { body = options(); } catch (e) { showPgError("filter is not JSON: " + e.message); return; }
  const base = `/v1/indexes/${encodeURIComponent(state.index)}`;
  const t0 = performance.now();
  try {
    const [pie, bm25] = await Promise.all([api(base + "/search", { query, ...body }), api(base + "/bm25", { query, k: body.k, filter: body.filter })]);
    const top = pie.hits.length ? (pie.hits[0].metadata || {}).task : null;
    renderHits($("pie-hits"), pie.hits, top);
    renderHits($("bm25-hits"), bm25.hits, top);
    window.pieTimings.roundTrips.push(performance.now() - t0);
    document.body.dataset.searched = String(window.pieTimings.roundTrips.length);
    const fs = { query, input: $("pg-input").value, k: body.k, filter: body.filter, content_weight: body.content_weight };
    const [text, chat] = await Promise.all([api(base + "/fewshot", { ...fs, format: "text" }), api(base + "/fewshot", { ...fs, format: "chat" })]);
    $("prompt-text").textContent = text.prompt;
    renderChat(chat.messages);
  } catch (e) { showPgError(e.message); }
}

function showPgError(text) { $("pg-error").textContent = text; $("pg-error").hidden = false; }

// ---- task map ----
async function fetchMap() {
  if (!state.mapDirty && state.map) return state.map;
  state.map = await api(`/v1/indexes/${encodeURIComponent(state.index)}/map`);
  state.mapDirty = false;
  return state.map;
}

function wrap(text, width) {
  const words = String(text).split(/\s+/), lines = [];
  let line = "";
  for (const w of words) { if ((line + " " + w).length > width && line) { lines.push(line); line = w; } else line = line ? line + " " + w : w; }
  if (line) lines.push(line);
  return lines.slice(0, 4).join("<br>") + (lines.length > 4 ? " …" : "");
}

function mapTraces(m) {
  const big = m.ids.length > 5000;
  return m.groups.map((g, gi) => {
    const idx = m.labels.map((l, i) => (l === g ? i : -1)).filter((i) => i >= 0);
    return {
      type: big ? "scattergl" : "scatter", mode: "markers", name: `${g} (${idx.length})`,
      x: idx.map((i) => m.x[i]), y: idx.map((i) => m.y[i]), customdata: idx.map((i) => m.ids[i]),
      text: idx.map((i) => `<b>${m.tasks[i] || "(no task)"}</b><br>${wrap(m.instructions[i], 60)}`),
      hovertemplate: "%{text}<extra></extra>",
      marker: { size: big ? 4 : 8, opacity: 0.85, color: g === "other" ? "#b8bec6" : PALETTE[gi % PALETTE.length] },
    };
  });
}

// Each colour group's name on its medoid-like point (the member nearest the group's mean), not piled in the centre.
function groupNames(m) {
  if (m.ids.length > 20000) return [];
  return m.groups.filter((g) => g !== "other").map((g) => {
    const idx = m.labels.map((l, i) => (l === g ? i : -1)).filter((i) => i >= 0);
    const mx = idx.reduce((a, i) => a + m.x[i], 0) / idx.length, my = idx.reduce((a, i) => a + m.y[i], 0) / idx.length;
    const at = idx.reduce((best, i) => ((m.x[i] - mx) ** 2 + (m.y[i] - my) ** 2 < (m.x[best] - mx) ** 2 + (m.y[best] - my) ** 2 ? i : best), idx[0]);
    return { x: m.x[at], y: m.y[at], text: g, showarrow: false, yshift: 10, font: { size: 10, color: "#333" }, bgcolor: "rgba(255,255,255,0.75)" };
  });
}

async function showMap() {
  if (!state.index) return;
  try {
    const m = await fetchMap();
    if (state.view === "edit") { renderEdit(); return; }
    if (!window.Plotly) { setStatus("plotly.js not loaded"); return; }
    const layout = { annotations: groupNames(m), margin: { l: 40, r: 10, t: 30, b: 40 }, hovermode: "closest", title: { text: `${m.ids.length} demonstrations, ${m.groups.length} colour groups`, font: { size: 13 } },
      legend: { font: { size: 11 }, itemclick: "toggleothers" }, xaxis: { title: "PC 1", zeroline: false }, yaxis: { title: "PC 2", zeroline: false } };
    await Plotly.react("map-plot", mapTraces(m), layout, { displaylogo: false, responsive: true });
    const plot = $("map-plot");
    if (!plot.dataset.bound) {
      plot.on("plotly_click", (ev) => { const id = ev.points[0].customdata; switchView("edit"); $("ed-find").value = id; renderEdit(); });
      plot.dataset.bound = "1";
    }
    document.body.dataset.mapReady = "1";
  } catch (e) { setStatus(e.message); }
}

// ---- edit ----
function renderEdit() {
  const m = state.map;
  if (!m) return;
  const needle = $("ed-find").value.trim().toLowerCase();
  const rows = [];
  for (let i = 0; i < m.ids.length && rows.length < 40; i++) {
    const hay = (m.ids[i] + " " + m.tasks[i] + " " + m.instructions[i]).toLowerCase();
    if (needle && !hay.includes(needle)) continue;
    const tr = el("tr");
    tr.dataset.id = m.ids[i];
    const input = el("input");
    input.value = m.tasks[i];
    input.className = "new-task";
    const relabelBtn = el("button", "relabel", "Relabel"), deleteBtn = el("button", "delete", "Delete");
    relabelBtn.type = deleteBtn.type = "button";
    relabelBtn.onclick = () => edit("relabel", m.ids[i], input.value.trim());
    deleteBtn.onclick = () => edit("delete", m.ids[i]);
    const actions = el("td");
    actions.append(relabelBtn, deleteBtn);
    const inputCell = el("td");
    inputCell.append(input);
    tr.append(el("td", "id", m.ids[i]), el("td", "cur-task", m.tasks[i]), el("td", "", m.instructions[i]), inputCell, actions);
    rows.push(tr);
  }
  $("ed-table").tBodies[0].replaceChildren(...rows);
}

async function edit(kind, id, task) {
  const msg = $("ed-msg");
  const base = `/v1/indexes/${encodeURIComponent(state.index)}`;
  try {
    let done;
    if (kind === "relabel") {
      if (!task) throw new Error("give the new task");
      const r = await api(base + "/relabel", { id, task });
      done = `relabelled ${id}: ${r.previous} → ${r.task}`;
    } else {
      await api(base + "/demonstrations", { ids: [id] }, "DELETE");
      done = `deleted ${id}`;
    }
    state.mapDirty = true;  // the map and this table show the change without a page reload
    await fetchMap();
    renderEdit();
    msg.textContent = done;
    msg.className = "ok";
  } catch (e) {
    msg.textContent = e.status === 403 ? "Refused: " + e.message.replace(/^403: /, "") : e.message;
    msg.className = "error";
  }
}

// ---- wiring ----
function switchView(view) {
  state.view = view;
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  document.querySelectorAll(".view").forEach((s) => s.classList.toggle("active", s.id === "view-" + view));
  if (view !== "playground") showMap();
}

function init() {
  $("key").value = key();
  const useKey = () => { sessionStorage.setItem(KEY_SLOT, $("key").value.trim()); state.map = null; loadIndexes(); };
  $("key-save").onclick = useKey;
  $("key").addEventListener("keydown", (e) => { if (e.key === "Enter") useKey(); });
  $("index").onchange = () => { state.index = $("index").value; state.mapDirty = true; if (state.view !== "playground") showMap(); };
  $("pg-form").addEventListener("submit", runPlayground);
  $("pg-cw").oninput = () => { $("pg-cw-val").textContent = parseFloat($("pg-cw").value).toFixed(2); };
  $("ed-find").oninput = renderEdit;
  document.querySelectorAll(".tab").forEach((b) => { b.onclick = () => switchView(b.dataset.view); });
  loadIndexes();
}

init();
