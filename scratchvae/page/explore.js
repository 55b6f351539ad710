// The page of bin/explore. Every picture on it is the project's own decoder, run by the server
// (scratchvae/cli/explore.py): the page only holds the code z and asks.
//
//   GET /api/info, GET /api/frame?i=N, GET /api/sample?seed=S, POST /api/decode {"z": [...]}
//
// While a decode is on its way, slider moves only update z; when it comes back, the newest z is
// sent (one request at a time, the latest code wins), so a fast drag never queues stale pictures.
"use strict";

const SPAN = 4;                 // a slider covers −SPAN … SPAN; z itself may lie further out
const WALK_STEPS = 24;
const $ = (id) => document.getElementById(id);
const state = {
  info: null, z: [], mu: null, frame: -1, seed: 0,
  inFlight: false, again: false, decodes: 0, busy: false,
};

async function ask(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const text = await response.text();
  if (!response.ok) throw new Error(`${response.status} ${text.trim()}`);
  return JSON.parse(text);
}

function say(text) {
  $("status").textContent = text;
}

async function show(img, url) {
  img.src = url;
  await img.decode();             // drawn before anything counts it as shown
}

// the decoded picture, and how long it took: the decoder on the server, and the round trip
async function showDecoded(answer, sentAt) {
  await show($("decoded"), answer.image);
  const trip = performance.now() - sentAt;
  state.decodes += 1;
  document.body.dataset.decodes = String(state.decodes);
  $("timing").textContent = `decoded in ${answer.decode_ms.toFixed(1)} ms on the ` +
    `${state.info.device.toUpperCase()} · ${trip.toFixed(0)} ms from request to picture`;
}

async function decodeNow() {
  const sentAt = performance.now();
  await showDecoded(await ask("/api/decode", { z: state.z }), sentAt);
}

// a slider moved: decode the newest z, one request at a time
async function decodeLatest() {
  if (state.inFlight) {
    state.again = true;
    return;
  }
  state.inFlight = true;
  try {
    do {
      state.again = false;
      await decodeNow();
    } while (state.again);
    say("");
  } catch (e) {
    say(e.message);
  } finally {
    state.inFlight = false;
  }
}

function clamp(v) {
  return Math.max(-SPAN, Math.min(SPAN, v));
}

function buildSliders() {
  const { order, kl } = state.info;
  const most = Math.max(...kl, 1e-12);
  const box = $("sliders");
  for (const d of order) {
    const row = document.createElement("div");
    row.className = "dim";
    row.innerHTML =
      `<label for="z${d}">z[${d}]</label>` +
      `<span class="track"><input type="range" id="z${d}" min="${-SPAN}" max="${SPAN}" step="0.01">` +
      `<span class="mu" id="mu${d}"></span></span>` +
      `<output id="v${d}" for="z${d}"></output>` +
      `<span class="kl" title="KL of z[${d}]: ${kl[d].toFixed(3)} nats">` +
      `<span class="bar"></span></span>` +
      `<span class="kl-value">${kl[d].toFixed(2)}</span>`;
    row.querySelector(".bar").style.width = `${(100 * kl[d] / most).toFixed(1)}%`;   // not inline: the page's policy
    box.appendChild(row);
    const input = row.querySelector("input");
    input.addEventListener("input", () => {
      state.z[d] = Number(input.value);
      $(`v${d}`).textContent = state.z[d].toFixed(2);
      $("decoded-caption").textContent = "decoded from the code on the sliders";
      decodeLatest();
    });
  }
}

// the sliders to state.z, and each tick to the frame's μ (none for a prior sample)
function setSliders() {
  for (let d = 0; d < state.z.length; d++) {
    $(`z${d}`).value = String(clamp(state.z[d]));
    $(`v${d}`).textContent = state.z[d].toFixed(2);
    const tick = $(`mu${d}`);
    tick.hidden = state.mu === null;
    if (state.mu !== null) tick.style.left = `${(50 * (clamp(state.mu[d]) + SPAN) / SPAN).toFixed(2)}%`;
  }
}

function frameCaption(i) {
  return `frame ${i + 1} of ${state.info.frames}`;
}

function sampleCaption(seed) {
  return `z drawn from the prior N(0, I), seed ${seed}: no frame`;
}

async function loadFrame(i) {
  const sentAt = performance.now();
  const answer = await ask(`/api/frame?i=${i}`);
  Object.assign(state, { frame: i, mu: answer.mu, z: answer.mu.slice() });
  history.replaceState(null, "", `#frame=${i + 1}`);        // a link to this frame, numbered as shown
  await show($("frame"), answer.frame);
  $("frame").hidden = false;
  $("frame-caption").textContent = frameCaption(i);
  $("decoded-caption").textContent = "its reconstruction from μ: move a slider";
  setSliders();
  await showDecoded(answer, sentAt);
}

async function loadSample() {
  state.seed += 1;
  const sentAt = performance.now();
  const answer = await ask(`/api/sample?seed=${state.seed}`);
  Object.assign(state, { mu: null, z: answer.z.slice() });
  $("frame").hidden = true;
  $("frame-caption").textContent = sampleCaption(answer.seed);
  $("decoded-caption").textContent = "decoded from the code on the sliders";
  setSliders();
  await showDecoded(answer, sentAt);
}

// from the code on the sliders, in a straight line, to another frame's μ (without frames: a prior sample's z)
async function walk() {
  const n = state.info.frames;
  let target, to;
  if (n > 1) {
    to = (state.frame + 1 + Math.floor(Math.random() * (n - 1))) % n;
    target = await ask(`/api/frame?i=${to}`);
    await show($("frame"), target.frame);
    $("frame").hidden = false;
  } else {
    target = await ask(`/api/sample?seed=${state.seed + 1}`);
    target.mu = target.z;
  }
  const from = state.z.slice();
  for (let k = 1; k <= WALK_STEPS; k++) {
    const t = k / WALK_STEPS;
    state.z = k < WALK_STEPS ? from.map((a, d) => a + t * (target.mu[d] - a)) : target.mu.slice();
    setSliders();
    $("frame-caption").textContent = n > 1 ? `walking to ${frameCaption(to)}: ${k} / ${WALK_STEPS}` :
      `walking to a prior sample: ${k} / ${WALK_STEPS}`;
    await decodeNow();
  }
  if (n > 1) {
    Object.assign(state, { frame: to, mu: target.mu, z: target.mu.slice() });
    history.replaceState(null, "", `#frame=${to + 1}`);
    $("frame-caption").textContent = frameCaption(to);
  } else {
    Object.assign(state, { seed: state.seed + 1, mu: null, z: target.z.slice() });
    $("frame-caption").textContent = sampleCaption(state.seed);
  }
  setSliders();
}

// a button's work: one at a time, the buttons and sliders still meanwhile
async function run(work) {
  if (state.busy) return;
  state.busy = true;
  document.body.dataset.busy = "1";
  for (const el of document.querySelectorAll("button, input")) el.disabled = true;
  try {
    await work();
    say("");
  } catch (e) {
    say(e.message);
  } finally {
    for (const el of document.querySelectorAll("button, input")) el.disabled = false;
    $("previous").disabled = $("next").disabled = $("reset").disabled = state.info.frames === 0;
    state.busy = false;
    delete document.body.dataset.busy;
  }
}

async function start() {
  try {
    state.info = await ask("/api/info");
  } catch (e) {
    say(`the server did not answer: ${e.message}`);
    return;
  }
  const info = state.info;
  $("about").textContent = `${info.checkpoint} · step ${info.step} · ${info.latent_dim} latent dimensions · ` +
    `${info.source} · decoding on the ${info.device.toUpperCase()}`;
  $("kl-source").textContent = info.kl_source;
  buildSliders();
  const n = info.frames;
  $("previous").addEventListener("click", () => run(() => loadFrame((state.frame - 1 + n) % n)));
  $("next").addEventListener("click", () => run(() => loadFrame((state.frame + 1) % n)));
  $("sample").addEventListener("click", () => run(loadSample));
  $("walk").addEventListener("click", () => run(walk));
  $("reset").addEventListener("click", () => run(() => loadFrame(Math.max(state.frame, 0))));
  const asked = /^#frame=(\d+)$/.exec(location.hash);       // the page's address may name a frame (1 … n)
  const first = asked && Number(asked[1]) >= 1 && Number(asked[1]) <= n ? Number(asked[1]) - 1 : 0;
  await run(() => (n > 0 ? loadFrame(first) : loadSample()));
  document.body.dataset.ready = "1";
}

start();
