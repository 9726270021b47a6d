// soundsearch web page: plain JavaScript over the JSON API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  hits: [],
  selected: -1,
  playingId: null,
  waveforms: new Map(), // file id -> Promise<{duration_s, peaks}>
  classifyFile: null, // an uploaded File to classify instead of the selected result
};

// --- helpers -----------------------------------------------------------------------------------

function describeError(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "input"}: ${d.msg}`).join("; ");
  }
  return `request failed (HTTP ${status})`;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const error = new Error(describeError(body, response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "?";
  const m = Math.floor(seconds / 60);
  const s = seconds - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

function say(text, isError = false) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function filterParams() {
  const params = new URLSearchParams();
  const add = (key, value) => { if (value !== "" && value != null) params.append(key, value); };
  add("min_duration", $("f-min").value);
  add("max_duration", $("f-max").value);
  add("folder", $("f-folder").value.trim());
  add("format", $("f-format").value);
  add("tag", $("f-tag").value.trim());
  add("k", $("k").value || "20");
  return params;
}

// --- searching ---------------------------------------------------------------------------------

async function searchText() {
  const q = $("q").value.trim();
  if (!q) { say("Type a description first, e.g. “rain on a tin roof”."); return; }
  const params = filterParams();
  params.set("q", q);
  params.set("mode", $("mode").value);
  history.replaceState(null, "", `?q=${encodeURIComponent(q)}&mode=${$("mode").value}`);
  say("Searching…");
  try {
    const body = await api(`/api/search?${params}`);
    show(body, `“${q}”`);
  } catch (e) {
    show({ hits: [] }, null);
    say(e.message, true);
  }
}

async function searchExample(file) {
  const params = filterParams();
  const form = new FormData();
  form.append("file", file);
  say(`Listening to ${file.name}…`);
  try {
    const body = await api(`/api/search/audio?${params}`, { method: "POST", body: form });
    show(body, `sounds like ${file.name}`);
  } catch (e) {
    show({ hits: [] }, null);
    say(`${file.name}: ${e.message}`, true);
  }
}

async function moreLikeThis(hit) {
  const params = filterParams();
  say(`Finding sounds like ${hit.name}…`);
  try {
    const body = await api(`/api/files/${hit.file_id}/similar?${params}`);
    show(body, `sounds like ${hit.name}`);
  } catch (e) {
    say(e.message, true);
  }
}

function show(body, what) {
  stop();
  state.hits = body.hits || [];
  state.selected = -1;
  const list = $("results");
  list.replaceChildren(...state.hits.map(renderHit));
  if (what) {
    const n = state.hits.length;
    const took = body.took_ms ? ` in ${Math.round(body.took_ms)} ms` : "";
    say(n ? `${n} result${n === 1 ? "" : "s"} for ${what}${took}` : `Nothing found for ${what}. Try other words, or fewer filters.`);
  }
  if (state.hits.length) select(0, false);
}

function renderHit(hit, i) {
  const row = $("row-template").content.firstElementChild.cloneNode(true);
  row.dataset.fileId = hit.file_id;
  row.querySelector(".rank").textContent = `${i + 1}`;
  row.querySelector(".name").textContent = hit.name;
  row.querySelector(".name").title = hit.path;
  row.querySelector(".folder").textContent = hit.folder;
  row.querySelector(".duration").textContent = clock(hit.duration_s);
  row.querySelector(".format").textContent = hit.format || "";
  const partial = hit.duration_s && hit.end_s - hit.start_s < hit.duration_s - 0.01;
  row.querySelector(".where").textContent = partial ? `match ${clock(hit.start_s)}–${clock(hit.end_s)}` : "";
  row.querySelector(".score").textContent = `score ${hit.score.toFixed(3)} · ${hit.matched_by.join("+")}`;
  const tags = row.querySelector(".tags");
  for (const tag of hit.tags.slice(0, 8)) {
    const chip = document.createElement("span");
    chip.className = "tag";
    chip.textContent = tag;
    tags.append(chip);
  }
  row.querySelector(".caption").textContent = hit.caption || "";
  row.querySelector(".play").addEventListener("click", (e) => { e.stopPropagation(); select(i, false); toggle(); });
  row.querySelector(".more").addEventListener("click", (e) => { e.stopPropagation(); moreLikeThis(hit); });
  row.querySelector(".classify").addEventListener("click", (e) => {
    e.stopPropagation();
    state.classifyFile = null;
    select(i, false);
    classify();
  });
  row.addEventListener("click", () => select(i, false));
  const canvas = row.querySelector(".wave");
  canvas.addEventListener("click", (e) => {
    // Click on the waveform: play from there.
    const rect = canvas.getBoundingClientRect();
    select(i, false);
    play(hit, ((e.clientX - rect.left) / rect.width) * (hit.duration_s || 0));
  });
  requestAnimationFrame(() => drawWave(row, hit));
  return row;
}

// --- waveforms ---------------------------------------------------------------------------------

function waveform(hit) {
  if (!state.waveforms.has(hit.file_id)) {
    state.waveforms.set(hit.file_id, api(`/api/files/${hit.file_id}/waveform?points=300`).catch(() => null));
  }
  return state.waveforms.get(hit.file_id);
}

async function drawWave(row, hit) {
  const data = await waveform(hit);
  const canvas = row.querySelector(".wave");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (!width) return;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const duration = (data && data.duration_s) || hit.duration_s || 1;
  const styles = getComputedStyle(document.documentElement);
  // The matching segment, highlighted behind the waveform.
  // Only a match on part of the file is highlighted: for a short file the whole file is the match.
  const partial = hit.end_s - hit.start_s < duration - 0.01;
  const x0 = (hit.start_s / duration) * width, x1 = (hit.end_s / duration) * width;
  if (partial) {
    g.fillStyle = "rgba(255, 179, 71, 0.16)";
    g.fillRect(x0, 0, Math.max(2, x1 - x0), height);
  }
  if (data) {
    const peaks = data.peaks, n = peaks.length, mid = height / 2;
    const inside = styles.getPropertyValue(partial ? "--accent" : "--wave-match");
    const outside = styles.getPropertyValue("--wave");
    for (let i = 0; i < n; i++) {
      const x = (i / n) * width, t = ((i + 0.5) / n) * duration;
      const h = Math.max(1, peaks[i] * (height / 2 - 2));
      g.fillStyle = t >= hit.start_s && t <= hit.end_s ? inside : outside;
      g.fillRect(x, mid - h, Math.max(1, width / n - 0.6), 2 * h);
    }
  }
  const player = $("player");
  if (state.playingId === hit.file_id && player.duration) {
    const x = (player.currentTime / duration) * width;
    g.fillStyle = styles.getPropertyValue("--accent-2");
    g.fillRect(x - 1, 0, 2, height);
  }
}

// --- playback ----------------------------------------------------------------------------------

function rowOf(fileId) {
  return document.querySelector(`.result[data-file-id="${fileId}"]`);
}

function play(hit, from) {
  const player = $("player");
  const start = from != null ? from : hit.start_s;
  if (state.playingId !== hit.file_id) {
    stop();
    state.playingId = hit.file_id;
    player.src = hit.audio_url;
    player.addEventListener("loadedmetadata", () => { player.currentTime = start; }, { once: true });
  } else {
    player.currentTime = start;
  }
  rowOf(hit.file_id)?.classList.add("playing");
  player.play().catch((e) => say(`Cannot play ${hit.name}: ${e.message}`, true));
}

function toggle() {
  const hit = state.hits[state.selected];
  if (!hit) return;
  const player = $("player");
  if (state.playingId === hit.file_id && !player.paused) {
    player.pause();
  } else if (state.playingId === hit.file_id && player.src) {
    rowOf(hit.file_id)?.classList.add("playing");
    player.play();
  } else {
    play(hit);
  }
}

function stop() {
  const player = $("player");
  player.pause();
  document.querySelectorAll(".result.playing").forEach((r) => r.classList.remove("playing"));
  state.playingId = null;
}

function select(i, focus = true) {
  const rows = $("results").children;
  if (!rows.length) return;
  i = Math.max(0, Math.min(rows.length - 1, i));
  rows[state.selected]?.classList.remove("selected");
  state.selected = i;
  rows[i].classList.add("selected");
  if (focus) { rows[i].focus({ preventScroll: true }); rows[i].scrollIntoView({ block: "nearest" }); }
  if (!state.classifyFile) $("classify-source").textContent = state.hits[i].name;
}

// --- classify and caption ----------------------------------------------------------------------

async function classify() {
  const form = new FormData();
  form.append("labels", $("labels").value);
  form.append("multi_label", $("multi-label").checked ? "true" : "false");
  const hit = state.hits[state.selected];
  if (state.classifyFile) form.append("file", state.classifyFile);
  else if (hit) form.append("file_id", hit.file_id);
  else { chartMessage("Search first and select a result, or upload a recording."); return; }
  chartMessage("Classifying…");
  try {
    const body = await api("/api/classify", { method: "POST", body: form });
    drawChart(body);
  } catch (e) {
    chartMessage(e.message, true);
  }
}

function chartMessage(text, isError = false) {
  const p = document.createElement("p");
  p.className = isError ? "hint error" : "hint";
  p.style.color = isError ? "var(--danger)" : "";
  p.textContent = text;
  $("chart").replaceChildren(p);
}

function drawChart(body) {
  const bars = body.labels.map(({ label, score }) => {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.label = label;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    name.title = label;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * score).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * score).toFixed(1)}%`;
    bar.append(name, track, value);
    return bar;
  });
  $("chart").replaceChildren(...bars);
}

async function caption(file) {
  const out = $("caption-out");
  out.className = "caption-out";
  out.textContent = `Listening to ${file.name}…`;
  const form = new FormData();
  form.append("file", file);
  try {
    const body = await api("/api/caption", { method: "POST", body: form });
    out.textContent = `“${body.caption}”`;
  } catch (e) {
    out.classList.add("unavailable");
    out.textContent = e.status === 503 ? `Captions are not available on this server: ${e.message}.` : e.message;
  }
}

// --- status ------------------------------------------------------------------------------------

async function loadStatus() {
  try {
    const s = await api("/api/status");
    const el = $("status");
    const length = s.audio_hours >= 1 ? `${s.audio_hours.toFixed(1)} h` : `${Math.round(s.audio_hours * 60)} min`;
    el.textContent = `${s.files.toLocaleString()} sounds · ${length} · ${s.encoder}`;
    if (s.encoder === "tiny-random") {
      const warn = document.createElement("span");
      warn.className = "warn";
      warn.textContent = " · untrained model: rankings are random";
      el.append(warn);
    }
    if (!s.captioning) $("caption-card").classList.add("off");
  } catch (_) {
    $("status").textContent = "server unreachable";
  }
}

// --- wiring ------------------------------------------------------------------------------------

function typing(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); searchText(); });
  $("example-button").addEventListener("click", () => $("example-file").click());
  $("example-file").addEventListener("change", (e) => { if (e.target.files[0]) searchExample(e.target.files[0]); e.target.value = ""; });
  $("filters-toggle").addEventListener("click", () => {
    const open = $("filters").hidden;
    $("filters").hidden = !open;
    $("filters-toggle").setAttribute("aria-expanded", String(open));
  });
  $("filters-clear").addEventListener("click", () => {
    for (const id of ["f-min", "f-max", "f-folder", "f-tag"]) $(id).value = "";
    $("f-format").value = "";
  });
  $("classify-form").addEventListener("submit", (e) => { e.preventDefault(); classify(); });
  $("classify-file").addEventListener("change", (e) => {
    state.classifyFile = e.target.files[0] || null;
    $("classify-source").textContent = state.classifyFile ? `${state.classifyFile.name} (upload)` : "the selected result";
    if (state.classifyFile) classify();
  });
  $("caption-file").addEventListener("change", (e) => { if (e.target.files[0]) caption(e.target.files[0]); e.target.value = ""; });

  const player = $("player");
  const redraw = () => {
    const row = state.playingId != null ? rowOf(state.playingId) : null;
    const hit = state.hits.find((h) => h.file_id === state.playingId);
    if (row && hit) drawWave(row, hit);
  };
  player.addEventListener("timeupdate", redraw);
  player.addEventListener("pause", () => document.querySelectorAll(".result.playing").forEach((r) => r.classList.remove("playing")));
  player.addEventListener("ended", redraw);

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e.target)) {
      if (e.key === "Escape") e.target.blur();
      if (e.key === "ArrowDown" && e.target === $("q") && state.hits.length) { e.preventDefault(); select(state.selected < 0 ? 0 : state.selected); }
      return;
    }
    // A focused button already answers Space and Enter itself (and must not be answered twice).
    if (e.target instanceof HTMLButtonElement && (e.key === " " || e.key === "Enter")) return;
    const hit = state.hits[state.selected];
    if (e.key === "/") { e.preventDefault(); $("q").focus(); $("q").select(); }
    else if (e.key === " ") { e.preventDefault(); toggle(); }
    else if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); select(state.selected + 1); }
    else if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); select(state.selected - 1); }
    else if (e.key === "m" && hit) moreLikeThis(hit);
    else if (e.key === "c" && hit) { state.classifyFile = null; classify(); }
  });

  // Drop a recording anywhere: search by example.
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files");
  window.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; $("drop").hidden = false; } });
  window.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; $("drop").hidden = true; } });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    $("drop").hidden = true;
    const file = e.dataTransfer.files[0];
    if (file) searchExample(file);
  });
  window.addEventListener("resize", () => state.hits.forEach((hit, i) => drawWave($("results").children[i], hit)));

  loadStatus();
  const params = new URLSearchParams(location.search);
  if (params.get("q")) {
    $("q").value = params.get("q");
    if (params.get("mode")) $("mode").value = params.get("mode");
    searchText();
  }
});
