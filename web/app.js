// Mirage browser client: plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  pc: null, media: null, sessionId: null, config: null,
  wanted: false,          // the user wants to be connected (drives reconnects)
  retries: 0, retryTimer: null,
  connection: "idle",
  server: null,           // last GET /sessions/{id}
  numbers: { fpsIn: 0, fpsOut: 0, framesReceived: 0, latencyMs: null, roundTripMs: null,
             skewMs: null, playoutDelayMs: null, level: null, audioPlaying: false },
  ids: { shown: new Map(), rtts: [] },
};

function say(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function sayRef(text, isError = false) {
  const el = $("ref-status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// ---------------------------------------------------------------- access token
// When the server wants auth (/config says so), every request that touches a
// session carries the token as a Bearer header. It is kept for this tab only.
const TOKEN_KEY = "mirage.token";

function authHeaders(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function authFailed(res) {
  return res.status === 401
    ? "the server needs a valid access token: enter it in “Access token” above"
    : null;
}

function setupToken(needed) {
  $("token-row").hidden = !needed;
  if (!needed) return;
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("token").onchange = () => {
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    showReference();
  };
}

async function showReference() {
  // An <img src> cannot send a header, so the portrait is fetched and shown from a blob.
  try {
    const res = await fetch("/reference", { headers: authHeaders() });
    if (!res.ok) return;
    $("ref-preview").src = URL.createObjectURL(await res.blob());
  } catch (err) { /* the preview is a nicety */ }
}

async function iceServers() {
  // STUN/TURN from the server; TURN credentials there are short-lived, so ask each time.
  let res;
  try {
    res = await fetch("/ice-servers", { headers: authHeaders() });
  } catch (err) {
    throw new Error("the server is unreachable (is it running?)");  // connect() retries this
  }
  if (!res.ok) throw new Error(authFailed(res) || `no ICE servers (${res.status})`);
  return (await res.json()).iceServers;
}

// ---------------------------------------------------------------- set-up
async function loadConfig() {
  const res = await fetch("/config");
  const config = await res.json();
  state.config = config;
  setupToken(!!config.auth);
  showReference();
  fill($("face"), Object.entries(config.backends.face).map(([name, why]) => ({
    value: name, label: why ? `${name} (unavailable)` : name, disabled: !!why, title: why || "",
  })), config.defaults.face);
  const voices = [];
  for (const [name, why] of Object.entries(config.backends.voice)) {
    if (name === "dsp" && !why) {
      for (const [preset, p] of Object.entries(config.voice_presets)) {
        voices.push({ value: `dsp:${preset}`, label: `dsp: ${preset}`, title: p.description });
      }
    } else {
      voices.push({ value: name, label: why ? `${name} (unavailable)` : name, disabled: !!why, title: why || "" });
    }
  }
  const defaultVoice = config.defaults.voice === "dsp" ? `dsp:${config.default_voice_preset}` : config.defaults.voice;
  fill($("voice"), voices, defaultVoice);
  fill($("quality"), [{ value: "auto", label: "auto" }, ...config.video.levels.map((lv) => ({
    value: lv.name, label: `${lv.size} px @ ${lv.fps} fps${lv.quality === "fast" ? " (fast)" : ""}`,
  }))], "auto");
}

function fill(select, options, selected) {
  select.replaceChildren(...options.map((o) => {
    const opt = new Option(o.label, o.value, false, o.value === selected);
    opt.disabled = !!o.disabled;
    if (o.title) opt.title = o.title;
    return opt;
  }));
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const pick = (kind, select) => fill(select, devices.filter((d) => d.kind === kind).map((d, i) => ({
    value: d.deviceId, label: d.label || `${kind === "videoinput" ? "camera" : "microphone"} ${i + 1}`,
  })), select.value);
  pick("videoinput", $("camera"));
  pick("audioinput", $("mic"));
}

function voiceChoice() {
  const [voice, preset] = $("voice").value.split(":");
  return { voice, voice_options: preset ? { preset } : {} };
}

// ---------------------------------------------------------------- connect
async function start() {
  state.wanted = true;
  $("start").disabled = true;
  $("stop").disabled = false;
  await connect();
}

async function connect() {
  clearTimeout(state.retryTimer);
  try {
    if (!state.media) {
      say("Asking for camera and microphone…");
      const cam = $("camera").value, mic = $("mic").value;
      state.media = await navigator.mediaDevices.getUserMedia({
        video: cam ? { deviceId: { exact: cam }, width: 640, height: 480 } : { width: 640, height: 480 },
        audio: mic ? { deviceId: { exact: mic } } : true,
      });
      $("self").srcObject = state.media;
      applyMutes();
      listDevices().catch(() => {});
      watchIds($("self"), (id, now) => state.ids.shown.set(id, now));
    }
    say("Connecting…");
    const pc = new RTCPeerConnection({ iceServers: await iceServers() });
    state.pc = pc;
    state.media.getTracks().forEach((t) => pc.addTrack(t, state.media));
    const remote = new MediaStream();
    pc.ontrack = (e) => {
      remote.addTrack(e.track);
      $("avatar").srcObject = remote;
      $("avatar").play().catch(() => {});
    };
    pc.onconnectionstatechange = () => onConnectionState(pc);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const { voice, voice_options } = voiceChoice();
    let res;
    try {
      res = await fetch("/offer", {
        method: "POST", headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer",
          options: { face: $("face").value, voice, voice_options, quality: $("quality").value } }),
      });
    } catch (err) {
      throw new Error("the server is unreachable (is it running?)");
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      const why = authFailed(res) || (res.status === 403 ? "not authorised" : body.error || res.statusText);
      const error = new Error(`the server refused the call (${res.status}): ${why}`);
      error.retry = res.status === 503;
      throw error;
    }
    state.sessionId = body.session_id;
    await pc.setRemoteDescription({ sdp: body.sdp, type: body.type });
    state.retries = 0;
  } catch (err) {
    say(`Could not connect: ${err.message}`, true);
    teardownPeer();
    if (state.wanted && (err.retry || /unreachable/.test(err.message))) scheduleReconnect();
    else if (!state.sessionId) { state.wanted = false; resetButtons(); }
  }
}

function gathered(pc) {
  return new Promise((ok) => {
    if (pc.iceGatheringState === "complete") return ok();
    const done = () => { if (pc.iceGatheringState === "complete") ok(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(ok, 2000);
  });
}

function onConnectionState(pc) {
  if (pc !== state.pc) return;
  state.connection = pc.connectionState;
  $("o-state").textContent = pc.connectionState;
  if (pc.connectionState === "connected") say("Connected.");
  if (pc.connectionState === "failed") {
    say("Connection lost: no network path to the server (ICE failed). Reconnecting…", true);
    teardownPeer();
    scheduleReconnect();
  } else if (pc.connectionState === "disconnected") {
    say("Network interrupted; waiting for it to come back…", true);
    setTimeout(() => {
      if (state.pc === pc && pc.connectionState === "disconnected") { teardownPeer(); scheduleReconnect(); }
    }, 4000);
  }
}

function scheduleReconnect() {
  if (!state.wanted) return;
  const delay = Math.min(10000, 1000 * 2 ** state.retries++);
  say(`Reconnecting in ${Math.round(delay / 1000)} s…`, true);
  state.retryTimer = setTimeout(connect, delay);
}

function teardownPeer() {
  if (state.sessionId) fetch(`/sessions/${state.sessionId}`, { method: "DELETE", headers: authHeaders() }).catch(() => {});
  if (state.pc) state.pc.close();
  state.pc = null;
  state.sessionId = null;
  state.server = null;
}

function stop() {
  state.wanted = false;
  clearTimeout(state.retryTimer);
  teardownPeer();
  if (state.media) state.media.getTracks().forEach((t) => t.stop());
  state.media = null;
  $("self").srcObject = null;
  $("avatar").srcObject = null;
  state.connection = "idle";
  resetButtons();
  say("Stopped.");
}

function resetButtons() {
  $("start").disabled = false;
  $("stop").disabled = true;
}

function applyMutes() {
  if (state.media) state.media.getAudioTracks().forEach((t) => { t.enabled = !$("mute-mic").checked; });
  $("avatar").muted = $("mute-avatar").checked;
}

// ---------------------------------------------------------------- live changes
async function patchSession(change) {
  if (!state.sessionId) return;
  const res = await fetch(`/sessions/${state.sessionId}`, {
    method: "PATCH", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(change),
  });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(authFailed(res) || body.error || res.statusText);
  }
  state.server = await res.json();
}

async function onVoiceChange() {
  if (!state.sessionId) return;
  const { voice, voice_options } = voiceChoice();
  try {
    if (state.server && state.server.voice === voice && Object.keys(voice_options).length) {
      await patchSession({ voice_options });   // same backend: change it live
      say(`Voice: ${$("voice").value}`);
    } else {
      await reconnect();                        // another backend: a new session
    }
  } catch (err) { say(`Could not change the voice: ${err.message}`, true); }
}

async function reconnect() {
  teardownPeer();
  await connect();
}

// ---------------------------------------------------------------- portrait
async function uploadReference(file) {
  if (!file) return;
  sayRef("Checking the portrait…");
  const target = state.sessionId ? `/reference?session_id=${state.sessionId}` : "/reference";
  try {
    const res = await fetch(target, { method: "POST", headers: authHeaders({ "Content-Type": file.type || "application/octet-stream" }), body: file });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(authFailed(res) || body.error || res.statusText);
    $("ref-preview").src = URL.createObjectURL(file);
    sayRef(`Portrait set (${body.width}×${body.height}).`);
  } catch (err) {
    sayRef(`Portrait rejected: ${err.message}`, true);
  }
}

// ---------------------------------------------------------------- numbers
// Frame ids drawn by Mirage's probe camera (18 cells of 24 px in 9 columns, on a
// 512 px frame): when both videos carry them, the page measures the true round trip.
function readId(video, canvas) {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return null;
  const side = Math.min(w, h), scale = side / 512;
  const ox = (w - side) / 2, oy = (h - side) / 2;
  canvas.width = 216; canvas.height = 48;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, ox, oy, 216 * scale, 48 * scale, 0, 0, 216, 48);
  const px = ctx.getImageData(0, 0, 216, 48).data;
  const level = (i) => {
    const r = Math.floor(i / 9) * 24 + 12, c = (i % 9) * 24 + 12, k = (r * 216 + c) * 4;
    return (px[k] + px[k + 1] + px[k + 2]) / 3;
  };
  const white = level(0), black = level(1);
  if (Math.abs(white - black) < 80) return null;
  let id = 0;
  for (let bit = 0; bit < 16; bit++) {
    const v = level(bit + 2);
    if (Math.abs(v - white) < Math.abs(v - black)) id |= 1 << bit;
  }
  return id;
}

function watchIds(video, onId) {
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
  const canvas = document.createElement("canvas");
  const step = (now) => {
    const id = readId(video, canvas);
    if (id !== null) onId(id, now);
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
}

watchIds($("avatar"), (id, now) => {
  const shown = state.ids.shown.get(id);
  if (shown === undefined) return;
  state.ids.shown.delete(id);
  state.ids.rtts.push(now - shown);
  if (state.ids.rtts.length > 50) state.ids.rtts.shift();
  const sorted = [...state.ids.rtts].sort((a, b) => a - b);
  state.numbers.roundTripMs = Math.round(sorted[Math.floor(sorted.length / 2)]);
  if (state.ids.shown.size > 500) state.ids.shown.clear();
});

let previous = null;
async function refreshNumbers() {
  const pc = state.pc;
  if (!pc) return;
  const now = performance.now();
  const stats = await pc.getStats();
  const sample = { t: now, framesDecoded: 0, framesSent: 0, rtt: null, vDelay: null, aDelay: null, audioSamples: 0 };
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      sample.framesDecoded = s.framesDecoded || 0;
      if (s.jitterBufferEmittedCount) sample.vDelay = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
    }
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      sample.audioSamples = s.totalSamplesReceived || 0;
      if (s.jitterBufferEmittedCount) sample.aDelay = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
    }
    if (s.type === "outbound-rtp" && s.kind === "video") sample.framesSent = s.framesEncoded || s.framesSent || 0;
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) sample.rtt = s.currentRoundTripTime * 1000;
  });
  const n = state.numbers;
  if (previous) {
    const dt = (now - previous.t) / 1000;
    n.fpsIn = Math.max(0, (sample.framesDecoded - previous.framesDecoded) / dt);
    n.fpsOut = Math.max(0, (sample.framesSent - previous.framesSent) / dt);
    n.audioPlaying = sample.audioSamples > previous.audioSamples;
  }
  n.framesReceived = sample.framesDecoded;
  previous = sample;
  if (state.sessionId) {
    try {
      const res = await fetch(`/sessions/${state.sessionId}`, { headers: authHeaders() });
      if (res.ok) state.server = await res.json();
    } catch (err) { /* the overlay keeps the last numbers */ }
  }
  const server = state.server;
  n.playoutDelayMs = server ? server.playout_delay_ms : null;
  n.level = server && server.quality ? server.quality.level : null;
  // Latency: the page's own frame-id round trip when it can see ids, else server + network.
  n.latencyMs = n.roundTripMs ?? (server && sample.rtt !== null
    ? Math.round((server.playout_delay_ms || 0) + sample.rtt + (sample.vDelay || 0)) : null);
  // Skew added by this browser's own buffers (the server sends lips and voice aligned).
  n.skewMs = sample.aDelay !== null && sample.vDelay !== null ? Math.round(sample.aDelay - sample.vDelay) : null;
  $("o-fps-in").textContent = n.fpsOut.toFixed(1);
  $("o-fps-out").textContent = n.fpsIn.toFixed(1);
  $("o-latency").textContent = n.latencyMs === null ? "–" : `${n.latencyMs} ms`;
  $("o-skew").textContent = n.skewMs === null ? "–" : `${n.skewMs} ms`;
  $("o-level").textContent = n.level || "–";
}
setInterval(() => refreshNumbers().catch(() => {}), 1000);

// ---------------------------------------------------------------- wiring
$("start").onclick = start;
$("stop").onclick = stop;
$("mute-mic").onchange = applyMutes;
$("mute-avatar").onchange = applyMutes;
$("voice").onchange = onVoiceChange;
$("face").onchange = () => { if (state.sessionId) reconnect(); };
$("quality").onchange = () => patchSession({ quality: $("quality").value })
  .then(() => say(`Quality: ${$("quality").value}`))
  .catch((err) => say(`Could not change quality: ${err.message}`, true));
$("ref-file").onchange = (e) => uploadReference(e.target.files[0]);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  uploadReference(e.dataTransfer.files[0]);
});

// Kiosk / automation API.
window.mirage = {
  start, stop, uploadReference,
  stats: () => ({
    connection: state.connection,
    sessionId: state.sessionId,
    framesReceived: state.numbers.framesReceived,
    fps: Number(state.numbers.fpsIn.toFixed(2)),
    fpsSent: Number(state.numbers.fpsOut.toFixed(2)),
    latencyMs: state.numbers.latencyMs,
    roundTripMs: state.numbers.roundTripMs,
    skewMs: state.numbers.skewMs,
    playoutDelayMs: state.numbers.playoutDelayMs,
    level: state.numbers.level,
    audioPlaying: state.numbers.audioPlaying,
  }),
};

// Choices may come in the address too (kiosk mode): ?face=warp&voice=dsp:deep&quality=auto
function applyQueryChoices() {
  for (const key of ["face", "voice", "quality"]) {
    const value = params.get(key);
    if (value && [...$(key).options].some((o) => o.value === value)) $(key).value = value;
  }
}

loadConfig()
  .then(applyQueryChoices)
  .then(() => listDevices().catch(() => {}))
  .then(() => { if (params.get("autostart") === "1") start(); })
  .catch((err) => say(`Cannot reach the server: ${err.message}`, true));
