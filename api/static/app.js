// soundsearch web page: plain JavaScript over the JSON API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  hits: [],
  selected: -1,
  playingId: null,
  waveforms: new Map(), // file id -> Promise<{duration_s, peaks}>
  classifyFile: null, // an uploaded File to classify instead of the selected result
  region: null, // {fileId, start, end} in seconds: the one selected region
  audition: null, // the region looping now: {fileId, region, source, buffer, startedAt}
  recording: null, // the microphone recording in progress
  audioContext: null,
};

const MEDIA_TYPES = {
  WAV: "audio/wav", WAVEX: "audio/wav", RF64: "audio/wav", FLAC: "audio/flac", OGG: "audio/ogg",
  MP3: "audio/mpeg", AIFF: "audio/aiff",
};
// Lossy sources cannot be cut sample-exactly: their regions come re-encoded to WAV (32-bit float), and say so.
const LOSSY_FORMATS = new Set(["OGG", "MP3"]);
const DRAG_PX = 4; // a press that moves less than this is a click (play from there), not a region
const MIN_REGION_S = 0.01;
const MAX_RECORD_S = 10;

// --- helpers -----------------------------------------------------------------------------------

function describeError(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "input"}: ${d.msg}`).join("; ");
  }
  return `request failed (HTTP ${status})`;
}

// The response, or an Error carrying the API's sentence for a failed request.
async function request(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    const error = new Error(describeError(body, response.status));
    error.status = response.status;
    throw error;
  }
  return response;
}

async function api(path, options = {}) {
  const response = await request(path, options);
  return response.json().catch(() => null);
}

function audioContext() {
  state.audioContext ||= new AudioContext();
  return state.audioContext;
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

async function searchExample(file, what = file.name) {
  const params = filterParams();
  const form = new FormData();
  form.append("file", file);
  say(`Listening to ${what}…`);
  try {
    const body = await api(`/api/search/audio?${params}`, { method: "POST", body: form });
    show(body, `sounds like ${what}`);
  } catch (e) {
    show({ hits: [] }, null);
    say(`${what}: ${e.message}`, true);
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
  stopAudition();
  state.region = null;
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
  const terms = (hit.matched_terms || []).filter((t) => typeof t === "string" && t);
  showScore(row.querySelector(".score"), hit, terms);
  highlight(row.querySelector(".name"), hit.name, terms);
  const tags = row.querySelector(".tags");
  for (const tag of hit.tags.slice(0, 8)) {
    const chip = document.createElement("span");
    chip.className = "tag";
    highlight(chip, tag, terms);
    tags.append(chip);
  }
  highlight(row.querySelector(".caption"), hit.caption || "", terms);
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
  canvas.addEventListener("pointerdown", (e) => dragRegion(e, canvas, hit, i));
  row.querySelector(".region-start").addEventListener("change", (e) => editRegion(hit, e.target.valueAsNumber, null));
  row.querySelector(".region-end").addEventListener("change", (e) => editRegion(hit, null, e.target.valueAsNumber));
  const loop = row.querySelector(".loop");
  loop.setAttribute("aria-label", `Loop the region of ${hit.name}`);
  loop.addEventListener("click", (e) => { e.stopPropagation(); select(i, false); toggleAudition(); });
  const clear = row.querySelector(".clear-region");
  clear.setAttribute("aria-label", `Clear the region of ${hit.name}`);
  clear.addEventListener("click", (e) => { e.stopPropagation(); clearRegion(); });
  const exportLink = row.querySelector(".export");
  exportLink.addEventListener("click", (e) => e.stopPropagation());
  exportLink.addEventListener("dragstart", (e) => dragOut(e, hit));
  showRegion(row, hit);
  requestAnimationFrame(() => drawWave(row, hit));
  return row;
}

// --- scores a person can read ------------------------------------------------------------------

// The sound's own match (cosine of its best window) and the query's words found in its name or
// metadata; the rank-fusion score, which only orders the list, stays in the tooltip.
function showScore(el, hit, terms) {
  el.title = `fused rank score ${hit.score.toFixed(4)}, found by ${hit.matched_by.join(" + ")}`;
  const audio = typeof hit.audio_score === "number" && isFinite(hit.audio_score) ? hit.audio_score : null;
  if (audio === null && !terms.length) {
    el.textContent = `score ${hit.score.toFixed(3)} · ${hit.matched_by.join("+")}`;
    return;
  }
  el.replaceChildren();
  if (audio !== null) {
    const percent = Math.round(100 * Math.max(0, Math.min(1, audio)));
    const match = document.createElement("span");
    match.className = "sound-match";
    match.setAttribute("role", "meter");
    match.setAttribute("aria-label", "sound match");
    match.setAttribute("aria-valuemin", "0");
    match.setAttribute("aria-valuemax", "100");
    match.setAttribute("aria-valuenow", String(percent));
    match.title = `cosine similarity of its best window: ${audio.toFixed(3)}`;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${percent}%`;
    track.append(fill);
    match.append("sound ", track, ` ${percent}%`);
    el.append(match);
  }
  if (terms.length) {
    const words = document.createElement("span");
    words.className = "word-match";
    words.append("words ");
    for (const term of terms) {
      const mark = document.createElement("mark");
      mark.textContent = term;
      words.append(mark, " ");
    }
    el.append(words);
  }
}

// `text` into `el`, with each occurrence of a matched word marked.
function highlight(el, text, terms) {
  if (!terms.length) { el.textContent = text; return; }
  const escaped = [...terms].sort((a, b) => b.length - a.length).map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  // A capturing group: split() puts the matches at the odd positions.
  const parts = text.split(new RegExp(`(${escaped.join("|")})`, "i"));
  el.replaceChildren();
  parts.forEach((part, k) => {
    if (!part) return;
    if (k % 2) {
      const mark = document.createElement("mark");
      mark.textContent = part;
      el.append(mark);
    } else {
      el.append(part);
    }
  });
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
  const region = regionOf(hit);
  const r0 = region ? (region.start / duration) * width : 0, r1 = region ? (region.end / duration) * width : 0;
  if (region) {
    g.fillStyle = "rgba(92, 200, 255, 0.2)";
    g.fillRect(r0, 0, r1 - r0, height);
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
  g.fillStyle = styles.getPropertyValue("--accent-2");
  if (region) {
    g.fillRect(r0, 0, 1, height);
    g.fillRect(r1 - 1, 0, 1, height);
  }
  const player = $("player");
  const looping = state.audition && state.audition.fileId === hit.file_id && state.audition.source;
  const at = looping ? loopPosition(state.audition)
    : state.playingId === hit.file_id && player.duration ? player.currentTime : null;
  if (at !== null) g.fillRect((at / duration) * width - 1, 0, 2, height);
}

// --- regions: select, loop, export, drag out ---------------------------------------------------

function regionOf(hit) {
  return state.region && state.region.fileId === hit.file_id ? state.region : null;
}

function refreshRow(fileId) {
  const row = rowOf(fileId);
  const hit = state.hits.find((h) => h.file_id === fileId);
  if (row && hit) { showRegion(row, hit); drawWave(row, hit); }
}

function redrawWave(fileId) {
  const row = rowOf(fileId);
  const hit = state.hits.find((h) => h.file_id === fileId);
  if (row && hit) drawWave(row, hit);
}

// A press on the waveform that moves selects a region; one that does not plays from there.
function dragRegion(down, canvas, hit, i) {
  if (down.button !== 0) return;
  const duration = hit.duration_s || 0;
  const timeAt = (x) => {
    const rect = canvas.getBoundingClientRect();
    return Math.min(duration, Math.max(0, ((x - rect.left) / rect.width) * duration));
  };
  const from = timeAt(down.clientX);
  let dragged = false;
  const done = new AbortController();
  canvas.setPointerCapture(down.pointerId);
  canvas.addEventListener("pointermove", (e) => {
    if (!dragged && Math.abs(e.clientX - down.clientX) < DRAG_PX) return;
    dragged = true;
    const to = timeAt(e.clientX);
    setRegion(hit, Math.min(from, to), Math.max(from, to));
  }, { signal: done.signal });
  canvas.addEventListener("pointerup", () => {
    done.abort();
    select(i, false);
    if (!dragged) play(hit, from);
  }, { signal: done.signal });
  canvas.addEventListener("pointercancel", () => done.abort(), { signal: done.signal });
}

function setRegion(hit, start, end) {
  const duration = hit.duration_s || 0;
  start = Math.max(0, Math.min(start, duration));
  end = Math.max(0, Math.min(end, duration));
  if (end - start < MIN_REGION_S) return false;
  stopAudition();
  const previous = state.region;
  // Milliseconds: what the fields show is what gets exported.
  state.region = { fileId: hit.file_id, start: Math.round(start * 1000) / 1000, end: Math.round(end * 1000) / 1000 };
  if (previous && previous.fileId !== hit.file_id) refreshRow(previous.fileId);
  refreshRow(hit.file_id);
  return true;
}

function clearRegion() {
  const region = state.region;
  if (!region) return;
  stopAudition();
  state.region = null;
  refreshRow(region.fileId);
}

// The start or end typed into the region's fields.
function editRegion(hit, start, end) {
  const region = regionOf(hit);
  if (!region) return;
  const from = start ?? region.start, to = end ?? region.end;
  if (!(isFinite(from) && isFinite(to) && setRegion(hit, from, to))) {
    say(`A region needs a start before its end, within 0–${(hit.duration_s || 0).toFixed(3)} s.`, true);
    refreshRow(hit.file_id);
  }
}

// Keys i and o: the region's start or end at the playhead (the match's start when not playing).
function markRegion(hit, edge) {
  const player = $("player");
  const at = state.playingId === hit.file_id ? player.currentTime : hit.start_s;
  const region = regionOf(hit);
  if (edge === "start") setRegion(hit, at, region && region.end > at ? region.end : hit.duration_s || 0);
  else setRegion(hit, region && region.start < at ? region.start : 0, at);
}

function showRegion(row, hit) {
  const region = regionOf(hit);
  row.querySelector(".region").hidden = !region;
  if (region) {
    const start = row.querySelector(".region-start"), end = row.querySelector(".region-end");
    start.value = region.start.toFixed(3);
    end.value = region.end.toFixed(3);
    end.max = String(hit.duration_s || "");
    row.querySelector(".region-length").textContent = `${(region.end - region.start).toFixed(3)} s`;
  }
  const looping = Boolean(state.audition && state.audition.fileId === hit.file_id);
  const loop = row.querySelector(".loop");
  loop.setAttribute("aria-pressed", String(looping));
  loop.textContent = looping ? "Stop loop" : "Loop";
  const { url, filename, reencoded } = exportTarget(hit);
  const link = row.querySelector(".export");
  link.href = url;
  link.download = filename;
  link.textContent = !region ? "Export file" : reencoded ? "Export region (WAV)" : "Export region";
  link.title = reencoded
    ? `${hit.format} is lossy: the region is decoded and re-encoded to 32-bit float WAV. Click, or drag it into a DAW.`
    : "Download it, or drag it onto the desktop or into a DAW";
  link.setAttribute("aria-label", `${link.textContent}: ${filename}`);
}

function lossy(hit) {
  return LOSSY_FORMATS.has((hit.format || "").toUpperCase());
}

// Seconds as the server names cuts: to the millisecond, without trailing zeros (22, 22.5, 22.125).
function seconds(value) {
  return value.toFixed(3).replace(/\.?0+$/, "");
}

function cutUrl(hit, region) {
  const url = `${hit.audio_url}?start=${seconds(region.start)}&end=${seconds(region.end)}`;
  return lossy(hit) ? `${url}&reencode=wav` : url;
}

// What Export and a drag out deliver: the region's cut (named as the server names it), or the whole
// file when there is no region.
function exportTarget(hit) {
  const region = regionOf(hit);
  const format = (hit.format || "").toUpperCase();
  if (!region) return { url: hit.audio_url, filename: hit.name, mime: MEDIA_TYPES[format], reencoded: false };
  const dot = hit.name.lastIndexOf(".");
  const stem = dot > 0 ? hit.name.slice(0, dot) : hit.name;
  const reencoded = lossy(hit);
  const extension = reencoded ? ".wav" : dot > 0 ? hit.name.slice(dot) : "";
  return {
    url: cutUrl(hit, region),
    filename: `${stem}_${seconds(region.start)}-${seconds(region.end)}${extension}`,
    mime: reencoded ? MEDIA_TYPES.WAV : MEDIA_TYPES[format],
    reencoded,
  };
}

// Chromium turns "DownloadURL" drag data ("mime:filename:url") into a file where it is dropped:
// the desktop, a file manager, a DAW's track.
function dragOut(e, hit) {
  const { url, filename, mime } = exportTarget(hit);
  const absolute = new URL(url, location.href).href;
  const type = mime || "application/octet-stream";
  e.dataTransfer.setData("DownloadURL", `${type}:${filename.replaceAll(":", "_")}:${absolute}`);
  e.dataTransfer.setData("text/uri-list", absolute);
  e.dataTransfer.effectAllowed = "copy";
}

// Looping through Web Audio, on the server's cut of the region: sample-exact loop points, and only
// the region is fetched and decoded, however long the file.
async function toggleAudition() {
  if (state.audition) { stopAudition(); return; }
  const hit = state.hits[state.selected];
  const region = hit && regionOf(hit);
  if (!region) { say("Drag across a result's waveform to select a region to loop."); return; }
  stop();
  const audition = { fileId: hit.file_id, region, source: null, buffer: null, startedAt: 0 };
  state.audition = audition;
  refreshRow(hit.file_id);
  try {
    const context = audioContext();
    await context.resume();
    const response = await request(cutUrl(hit, region));
    const buffer = await context.decodeAudioData(await response.arrayBuffer());
    if (state.audition !== audition) return; // stopped, or another region, while it loaded
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.loop = true;
    source.connect(context.destination);
    source.start();
    Object.assign(audition, { source, buffer, startedAt: context.currentTime });
    requestAnimationFrame(function tick() {
      if (state.audition !== audition) return;
      redrawWave(audition.fileId);
      requestAnimationFrame(tick);
    });
  } catch (e) {
    if (state.audition === audition) { state.audition = null; refreshRow(hit.file_id); }
    say(`Cannot loop the region of ${hit.name}: ${e.message}`, true);
  }
}

function stopAudition() {
  const audition = state.audition;
  if (!audition) return;
  state.audition = null;
  audition.source?.stop();
  refreshRow(audition.fileId);
}

function loopPosition(audition) {
  const elapsed = audioContext().currentTime - audition.startedAt;
  return audition.region.start + (elapsed % audition.buffer.duration);
}

// --- playback ----------------------------------------------------------------------------------

function rowOf(fileId) {
  return document.querySelector(`.result[data-file-id="${fileId}"]`);
}

function play(hit, from) {
  stopAudition();
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
  if (state.audition) { stopAudition(); return; }
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

// --- search with the microphone ----------------------------------------------------------------

async function startRecording() {
  if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
    say("This browser cannot record here: the microphone needs a secure page (https, or localhost).", true);
    return;
  }
  stop();
  stopAudition();
  const context = audioContext();
  context.resume(); // inside the click: browsers start audio only on a user's gesture
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    say(microphoneError(e), true);
    return;
  }
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const recording = { recorder, stream, analyser, startedAt: performance.now(), cancelled: false, timer: 0 };
  state.recording = recording;
  recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
  recorder.addEventListener("stop", () => finishRecording(recording, chunks));
  recorder.start();
  recording.timer = setTimeout(stopRecording, MAX_RECORD_S * 1000);
  showRecording(true);
  say(`Recording… make the sound, then press Stop (at most ${MAX_RECORD_S} s; Esc cancels).`);
  const samples = new Float32Array(analyser.fftSize);
  requestAnimationFrame(function meter() {
    if (state.recording !== recording) return;
    analyser.getFloatTimeDomainData(samples);
    const peak = samples.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    $("level").style.width = `${Math.min(100, 100 * peak).toFixed(0)}%`;
    $("record-clock").textContent = clock((performance.now() - recording.startedAt) / 1000);
    requestAnimationFrame(meter);
  });
}

function stopRecording(cancel = false) {
  const recording = state.recording;
  if (!recording) return;
  recording.cancelled = cancel === true;
  clearTimeout(recording.timer);
  if (recording.recorder.state !== "inactive") recording.recorder.stop();
}

// The recording as a WAV built here: the server decodes WAV whatever codec MediaRecorder chose
// (Chromium records WebM/Opus, which the server does not read).
async function finishRecording(recording, chunks) {
  recording.stream.getTracks().forEach((track) => track.stop());
  state.recording = null;
  showRecording(false);
  if (recording.cancelled) { say("Recording cancelled."); return; }
  const blob = new Blob(chunks, { type: recording.recorder.mimeType });
  if (!blob.size) { say("Nothing was recorded: the microphone sent no sound.", true); return; }
  try {
    const audio = await audioContext().decodeAudioData(await blob.arrayBuffer());
    const file = new File([wavBytes(audio)], "recording.wav", { type: "audio/wav" });
    await searchExample(file, "your recording");
  } catch (e) {
    say(`Could not read the recording: ${e.message}`, true);
  }
}

function microphoneError(e) {
  if (e.name === "NotAllowedError" || e.name === "SecurityError") {
    return "Microphone access was denied: allow it in the browser's site settings to search by a recording.";
  }
  if (e.name === "NotFoundError" || e.name === "OverconstrainedError") {
    return "No microphone found: connect one, or search with a recorded file (By example…).";
  }
  if (e.name === "NotReadableError") return "The microphone is busy or failed: another application may be using it.";
  return `Cannot record from the microphone: ${e.message}`;
}

function showRecording(on) {
  const button = $("record-button");
  button.setAttribute("aria-pressed", String(on));
  button.classList.toggle("on", on);
  button.querySelector(".record-text").textContent = on ? "Stop" : "Record";
  $("recording").hidden = !on;
  $("level").style.width = "0";
  $("record-clock").textContent = clock(0);
}

// 16-bit mono PCM WAV of a decoded recording (channels averaged), at its own sample rate.
function wavBytes(audio) {
  const n = audio.length, channels = audio.numberOfChannels, rate = audio.sampleRate;
  const mono = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    const data = audio.getChannelData(c);
    for (let k = 0; k < n; k++) mono[k] += data[k] / channels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const ascii = (offset, text) => [...text].forEach((ch, k) => view.setUint8(offset + k, ch.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + 2 * n, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, 2 * rate, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, 2 * n, true);
  for (let k = 0; k < n; k++) view.setInt16(44 + 2 * k, Math.round(32767 * Math.max(-1, Math.min(1, mono[k]))), true);
  return view.buffer;
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
  $("record-button").addEventListener("click", () => (state.recording ? stopRecording() : startRecording()));
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
  const redraw = () => { if (state.playingId != null) redrawWave(state.playingId); };
  player.addEventListener("timeupdate", redraw);
  player.addEventListener("pause", () => document.querySelectorAll(".result.playing").forEach((r) => r.classList.remove("playing")));
  player.addEventListener("ended", redraw);

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape" && state.recording) { stopRecording(true); return; }
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
    else if (e.key === "Escape") clearRegion();
    else if (e.key === "l") toggleAudition();
    else if (e.key === "i" && hit) markRegion(hit, "start");
    else if (e.key === "o" && hit) markRegion(hit, "end");
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
