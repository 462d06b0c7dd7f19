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
             audioRoundTripMs: null, estimateMs: null, skewMs: null, playoutDelayMs: null,
             level: null, audioPlaying: false, receiverDelayMs: null },
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
      if (e.track.kind === "audio") watchLoudness(state.media, remote);
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
  if (trace.node) { trace.node.disconnect(); trace.node = null; trace.mic = null; }
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
// The page times its own round trip by cross-correlating what it sends with what
// comes back: the motion of the self view against the avatar's (each frame's change
// from the one before, at its requestVideoFrameCallback capture / display time), and the loudness of the microphone against the returned voice (128-sample
// blocks of one AudioContext, so both sides share a sample clock). Any camera and
// any backend will do: a face that moves makes the avatar move, speech stays speech.
// Still or silent input gives no figure rather than a wrong one.
const TRACE_MS = 8000, MAX_LAG_MS = 1000, PATH_MS = 3000;
const trace = {
  self: [], avatar: [],                                   // [display time, change] per frame
  avatarPath: [],                                         // [display time, receive→display] per frame
  mic: null, back: null, head: 0, filled: 0, blockMs: 0,  // loudness rings, one slot a block
  ctx: null, node: null, quality: 0, window: null, audioWindow: null,
};

// The self view's frames are stamped with their camera capture time where the browser
// gives one (the start of the round trip), the avatar's with their display time (its end).
function watchMotion(video, out, atCapture, path = null) {
  const canvas = document.createElement("canvas");
  canvas.width = 32; canvas.height = 24;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let prev = null;
  const step = (now, meta) => {
    video.requestVideoFrameCallback(step);
    if (!video.videoWidth) { prev = null; return; }
    ctx.drawImage(video, 0, 0, 32, 24);
    const px = ctx.getImageData(0, 0, 32, 24).data, y = new Float32Array(768);
    let change = 0;
    for (let i = 0; i < 768; i++) {
      y[i] = px[4 * i] + px[4 * i + 1] + px[4 * i + 2];
      if (prev) change += Math.abs(y[i] - prev[i]);
    }
    const t = (atCapture && meta.captureTime) || meta.expectedDisplayTime;
    if (prev) out.push([t, change / 2304]);
    if (path && meta.receiveTime) {
      path.push([t, meta.expectedDisplayTime - meta.receiveTime]);
      while (path.length && path[0][0] < t - PATH_MS) path.shift();
    }
    prev = y;
    while (out.length && out[0][0] < t - TRACE_MS) out.shift();
  };
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) video.requestVideoFrameCallback(step);
}
watchMotion($("self"), trace.self, true);
watchMotion($("avatar"), trace.avatar, false, trace.avatarPath);

const LOUDNESS_WORKLET = `registerProcessor("loudness", class extends AudioWorkletProcessor {
  process(inputs) {
    const a = inputs[0][0], b = inputs[1][0];
    const rms = (ch) => { if (!ch) return 0; let s = 0; for (const v of ch) s += v * v; return Math.sqrt(s / ch.length); };
    this.port.postMessage([rms(a), rms(b)]);
    return true;
  }
});`;

// One worklet with two inputs (mic, returned audio): every message is one block of both.
async function watchLoudness(mic, back) {
  try {
    if (!trace.ctx) {
      trace.ctx = new AudioContext();
      await trace.ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([LOUDNESS_WORKLET], { type: "text/javascript" })));
    }
    const ctx = trace.ctx;
    if (trace.node) trace.node.disconnect();
    const node = new AudioWorkletNode(ctx, "loudness", { numberOfInputs: 2, numberOfOutputs: 1 });
    const blocks = Math.ceil(TRACE_MS / (128000 / ctx.sampleRate));
    trace.mic = new Float32Array(blocks); trace.back = new Float32Array(blocks);
    trace.head = 0; trace.filled = 0; trace.blockMs = 128000 / ctx.sampleRate;
    node.port.onmessage = (e) => {
      trace.mic[trace.head] = e.data[0]; trace.back[trace.head] = e.data[1];
      trace.head = (trace.head + 1) % blocks; trace.filled = Math.min(blocks, trace.filled + 1);
    };
    ctx.createMediaStreamSource(mic).connect(node, 0, 0);
    ctx.createMediaStreamSource(back).connect(node, 0, 1);
    const mute = ctx.createGain();
    mute.gain.value = 0;
    node.connect(mute).connect(ctx.destination);  // pulled by the graph, heard nowhere
    trace.node = node;
    await ctx.resume();
  } catch (err) { trace.mic = null; }  // no audio figure; the video one still works
}

// The lag (ms) by which `later` follows `early`, from the cross-correlation of the two
// mean-removed impulse trains (display time, change), a triangle kernel of ±`width` ms.
// The median over every bin ≥ 10 % of the peak (not the peak's lobe only, nor motion
// onsets: both read worse against the edges on real loaded traces, issue 15 item 5).
function lagOf(early, later, width = 20, step = 2) {
  if (early.length < 30 || later.length < 30) return null;
  const t0 = Math.max(early[0][0], later[0][0]), t1 = later[later.length - 1][0] - MAX_LAG_MS;
  const a = early.filter(([t]) => t >= t0 && t <= t1), b = later.filter(([t]) => t >= t0);
  if (a.length < 30 || t1 - t0 < 2000) return null;
  trace.window = [t0, t1];
  const mean = (xs) => xs.reduce((s, [, v]) => s + v, 0) / xs.length;
  const ma = mean(a), mb = mean(b);
  const bins = new Float64Array(Math.floor(MAX_LAG_MS / step) + 1);
  let j0 = 0;
  for (const [ta, va] of a) {
    while (j0 < b.length && b[j0][0] < ta - width) j0++;
    for (let j = j0; j < b.length && b[j][0] <= ta + MAX_LAG_MS + width; j++) {
      const d = b[j][0] - ta, w = (va - ma) * (b[j][1] - mb);
      const lo = Math.max(0, Math.ceil((d - width) / step)), hi = Math.min(bins.length - 1, Math.floor((d + width) / step));
      for (let k = lo; k <= hi; k++) bins[k] += w * (1 - Math.abs(d - k * step) / width);
    }
  }
  // Spikes (cuts, quick moves): how far the peak stands above the mean |correlation|.
  const peak = Math.max(...bins), spread = bins.reduce((s, v) => s + Math.abs(v), 0) / bins.length;
  return peakOf(bins, step, 0, spread > 0 ? peak / spread : 0, 3, false);
}

// The audio lag (ms): the same correlation on the two loudness rings, block by block,
// from AUDIO_FROM_MS: a burst's envelope correlates over ± its length, and a search
// cut at 0 kept only the late part of that lobe for a short lag (+20…+45 ms at 30–60 ms).
const AUDIO_FROM_MS = -200;
function audioLag() {
  if (!trace.mic || trace.filled < trace.mic.length) return null;
  const now = performance.now();
  trace.audioWindow = [now - TRACE_MS, now - MAX_LAG_MS];  // the mic's span, roughly
  const n = trace.mic.length, maxLag = Math.floor(MAX_LAG_MS / trace.blockMs), m = n - maxLag;
  const neg = Math.floor(-AUDIO_FROM_MS / trace.blockMs);
  const at = (ring, i) => ring[(trace.head + i) % n];  // oldest first
  const a = new Float64Array(m), b = new Float64Array(n);
  for (let i = 0; i < n; i++) { b[i] = at(trace.back, i); if (i < m) a[i] = at(trace.mic, i); }
  let ma = 0;
  for (let i = neg; i < m; i++) ma += a[i];
  ma /= m - neg;
  const mb = b.reduce((s, v) => s + v, 0) / n;
  const bins = new Float64Array(neg + maxLag + 1);  // bin j: lag j − neg blocks
  for (let k = -neg; k <= maxLag; k++) {
    let s = 0;
    for (let i = neg; i < m; i++) s += (a[i] - ma) * (b[i + k] - mb);
    bins[k + neg] = s;
  }
  // Envelopes: the correlation coefficient at the peak.
  let ea = 0, eb = 0;
  for (let i = neg; i < m; i++) { ea += (a[i] - ma) ** 2; eb += (b[i + maxLag] - mb) ** 2; }
  const r = Math.max(...bins) / Math.sqrt(ea * eb);
  return peakOf(bins, trace.blockMs, -neg * trace.blockMs, Number.isFinite(r) ? r : 0, 0.3, true);
}

// The lag a correlation points at (bin i is lag first + i·step): the weighted median of
// its positive mass ≥ 10 % of its peak at lag ≥ 0, so that scattered lags give their
// middle, as a median of per-event lags would; with `lobe`, of the peak's own lobe only
// (out from the peak while bins stay ≥ 10 % of it): the voice's, whose search starts
// below 0 and would otherwise take in a periodic input's echoes. `match` says how
// clearly the peak stands out; below `needed` (still or silent input) there is no
// figure rather than a wrong one.
function peakOf(bins, step, first, match, needed, lobe) {
  trace.quality = match;
  if (!(match >= needed)) return null;
  // The peak among lags ≥ 0 (a round trip is never negative; the bins below 0 are there
  // for a short lag's lobe, and would otherwise alias a periodic input's long one).
  const i0 = Math.max(0, Math.round(-first / step));  // first is a whole number of steps
  let k = i0;
  for (let i = i0 + 1; i < bins.length; i++) if (bins[i] > bins[k]) k = i;
  if (k === i0 && i0 > 0 && bins[i0 - 1] > bins[k]) return null;  // it still rises below 0
  const floor = 0.1 * bins[k];
  let lo = lobe ? k : 0, hi = lobe ? k : bins.length - 1, total = 0, run = 0;
  while (lobe && lo > 0 && bins[lo - 1] >= floor) lo--;
  while (lobe && hi < bins.length - 1 && bins[hi + 1] >= floor) hi++;
  for (let i = lo; i <= hi; i++) if (bins[i] >= floor) total += bins[i];
  for (let i = lo; i <= hi; i++) {
    if (bins[i] < floor) continue;
    if ((run += bins[i]) >= total / 2) return first + i * step;
  }
  return first + k * step;
}

function measureRoundTrip() {
  trace.quality = 0;
  const n = state.numbers, video = lagOf(trace.self, trace.avatar);
  n.videoMatch = trace.quality;
  trace.quality = 0;
  const audio = audioLag();
  n.audioMatch = trace.quality;
  n.roundTripMs = video === null ? null : Math.round(video);
  n.audioRoundTripMs = audio === null ? null : Math.round(audio);
  n.skewMs = video === null || audio === null ? null : Math.round(audio - video);
}

// This page's own delays after a packet arrives, per track: the avatar's median
// receive→display over the last 3 s (requestVideoFrameCallback), and the voice's wait
// in the audio jitter buffer (+ the output device's, where the browser reports it) over
// the last second. Null until both are known.
function receiverDelays(sample, before) {
  const path = trace.avatarPath.map((p) => p[1]).sort((a, b) => a - b);
  const emitted = sample.aEmitted - before.aEmitted;
  if (path.length < 10 || emitted <= 0) return null;
  let audio = 1000 * (sample.aWait - before.aWait) / emitted;
  const played = sample.aPlayed - before.aPlayed;
  if (played > 0) audio += 1000 * (sample.aPlayout - before.aPlayout) / played;
  const clamp = (ms) => Math.round(Math.min(400, Math.max(0, ms)));
  return { video: clamp(path[path.length >> 1]), audio: clamp(audio) };
}

let previous = null;
async function refreshNumbers() {
  const pc = state.pc;
  if (!pc) return;
  const now = performance.now();
  const stats = await pc.getStats();
  const sample = { t: now, framesDecoded: 0, framesSent: 0, rtt: null, vDelay: null, aDelay: null, audioSamples: 0,
                   aWait: 0, aEmitted: 0, aPlayout: 0, aPlayed: 0 };
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      sample.framesDecoded = s.framesDecoded || 0;
      if (s.jitterBufferEmittedCount) sample.vDelay = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
    }
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      sample.audioSamples = s.totalSamplesReceived || 0;
      if (s.jitterBufferEmittedCount) sample.aDelay = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
      sample.aWait = s.jitterBufferDelay || 0;
      sample.aEmitted = s.jitterBufferEmittedCount || 0;
    }
    if (s.type === "media-playout" && s.kind === "audio") {  // after the jitter buffer: the output device
      sample.aPlayout = s.totalPlayoutDelay || 0;
      sample.aPlayed = s.totalSamplesCount || 0;
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
    n.receiverDelayMs = receiverDelays(sample, previous);
  }
  n.framesReceived = sample.framesDecoded;
  previous = sample;
  if (state.sessionId) {
    try {
      // The page measures its own delays after receipt (stats().receiverDelayMs) but does
      // not report them (PATCH receiver_delay_ms): Chromium's audio jitter buffer holds the
      // voice for its own lip sync, so a lead computed from it held the video back more
      // (docs/benchmarks.md, browser round trip, 2026-12-02).
      const res = await fetch(`/sessions/${state.sessionId}`, { headers: authHeaders() });
      if (res.ok) state.server = await res.json();
    } catch (err) { /* the overlay keeps the last numbers */ }
  }
  const server = state.server;
  n.playoutDelayMs = server ? server.playout_delay_ms : null;
  n.level = server && server.quality ? server.quality.level : null;
  // Latency: the page's own measured round trip; while it has none (still or silent
  // input), a lower bound from the server's playout delay, the network and our jitter
  // buffer (it leaves out capture, encoding and display, so it is shown as "≥").
  measureRoundTrip();
  n.estimateMs = server && sample.rtt !== null
    ? Math.round((server.playout_delay_ms || 0) + sample.rtt + (sample.vDelay || 0)) : null;
  n.latencyMs = n.roundTripMs;
  $("o-fps-in").textContent = n.fpsOut.toFixed(1);
  $("o-fps-out").textContent = n.fpsIn.toFixed(1);
  $("o-latency").textContent = n.latencyMs !== null ? `${n.latencyMs} ms`
    : n.estimateMs !== null ? `≥ ${n.estimateMs} ms` : "–";
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
    audioRoundTripMs: state.numbers.audioRoundTripMs,
    latencyEstimateMs: state.numbers.estimateMs,
    match: { video: state.numbers.videoMatch, audio: state.numbers.audioMatch,
             window: trace.window, audioWindow: trace.audioWindow },
    skewMs: state.numbers.skewMs,
    playoutDelayMs: state.numbers.playoutDelayMs,
    level: state.numbers.level,
    audioPlaying: state.numbers.audioPlaying,
    receiverDelayMs: state.numbers.receiverDelayMs,
    videoLeadMs: state.server ? state.server.video_lead_ms : null,
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
