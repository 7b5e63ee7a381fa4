// facsflow web page: upload an image or a video (or stream the camera), draw the faces, show AU
// bars and a timeline.
// Plain browser JavaScript, no build step; talks to the same origin's /v1 API.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#e53935", "#8e24aa", "#3949ab", "#039be5", "#00897b", "#7cb342", "#fdd835", "#fb8c00",
  "#6d4c41", "#546e7a", "#d81b60", "#5e35b1", "#1e88e5", "#00acc1", "#43a047", "#c0ca33"];
const $ = (id) => document.getElementById(id);

const state = { auNames: {}, answer: null, kind: null, face: 0, url: null };

function headers(extra) {
  const h = Object.assign({}, extra);
  const key = $("api-key").value.trim();
  if (key) h["X-API-Key"] = key;
  return h;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", Boolean(isError));
}

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    if (!r.ok) return;
    const m = await r.json();
    for (const au of m.aus) state.auNames["AU" + au.number] = au.name;
    const card = m.model_card || {};
    $("card").textContent = card.data_note ? "Model card: " + card.data_note : "";
  } catch (e) { /* the page still works without names */ }
}

async function analyse(file) {
  const isVideo = (file.type || "").startsWith("video/");
  state.kind = isVideo ? "video" : "image";
  state.face = 0;
  setStatus("Analysing " + file.name + " …");
  $("result").hidden = true;
  let r;
  try {
    r = await fetch(isVideo ? "/v1/predict/video" : "/v1/predict", {
      method: "POST", body: file,
      headers: headers({ "Content-Type": file.type || "application/octet-stream" }),
    });
  } catch (e) {
    setStatus("The server could not be reached: " + e, true);
    return;
  }
  let body;
  try { body = await r.json(); } catch (e) { body = { error: "unreadable answer (" + r.status + ")" }; }
  if (!r.ok) {
    setStatus("Error " + r.status + ": " + (body.error || r.statusText), true);
    return;
  }
  state.answer = body;
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = URL.createObjectURL(file);
  if (Object.keys(state.auNames).length === 0) await loadModels();
  isVideo ? showVideo(body) : showImage(body);
}

// ---------------------------------------------------------------- still images
function showImage(ans) {
  const img = $("photo"), clip = $("clip");
  $("cam").hidden = true;
  clip.hidden = true; clip.removeAttribute("src");
  img.hidden = false;
  img.src = state.url;
  $("timeline-section").hidden = true;
  $("overlay").setAttribute("viewBox", `0 0 ${ans.width} ${ans.height}`);
  $("result").hidden = false;
  const n = ans.faces.length;
  setStatus(n ? `Found ${n} face${n > 1 ? "s" : ""}.` : "No face found in this image.");
  faceTabs(ans.faces.map((f) => f.face_id), () => drawImage(ans));
  drawImage(ans);
  membersNote(ans);
}

function drawImage(ans) {
  drawFaces(ans.faces);
  const f = ans.faces.find((x) => x.face_id === state.face) || ans.faces[0];
  bars(f, f ? `Action Units of face ${f.face_id}` : "Action Units");
}

// ---------------------------------------------------------------- videos
function showVideo(ans) {
  const img = $("photo"), clip = $("clip");
  $("cam").hidden = true;
  img.hidden = true; img.removeAttribute("src");
  clip.hidden = false;
  clip.src = state.url;
  $("overlay").setAttribute("viewBox", `0 0 ${ans.width} ${ans.height}`);
  $("result").hidden = false;
  const found = ans.rows.filter((r) => r.success === 1).length;
  setStatus(`${ans.n_frames} frames, a face in ${found}; ${ans.face_ids.length} face${ans.face_ids.length > 1 ? "s" : ""} tracked.`);
  state.face = ans.face_ids[0];
  faceTabs(ans.face_ids, () => { timeline(ans); syncVideo(); });
  timeline(ans);
  syncVideo();
  membersNote(ans);
  clip.ontimeupdate = syncVideo;
  clip.onseeked = syncVideo;
}

function faceRows(ans) {
  return ans.rows.filter((r) => r.success === 1 && r.face_id === state.face);
}

function syncVideo() {
  const ans = state.answer;
  if (!ans || state.kind !== "video") return;
  const t = $("clip").currentTime || 0;
  const rows = faceRows(ans);
  let best = rows[0];
  for (const r of rows) if (Math.abs(r.timestamp - t) < Math.abs(best.timestamp - t)) best = r;
  drawFaces(best ? [best] : []);
  bars(best, best ? `Action Units at ${best.timestamp.toFixed(2)} s (frame ${best.frame})` : "Action Units");
  const cursor = document.querySelector("#timeline .cursor");
  if (cursor && state.scaleX) {
    const x = state.scaleX(t);
    cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
  }
}

function timeline(ans) {
  const svg = $("timeline");
  svg.replaceChildren();
  $("timeline-section").hidden = false;
  const W = 1000, H = 260, L = 40, R = 10, T = 10, B = 30;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const rows = faceRows(ans);
  const duration = Math.max(ans.n_frames / ans.fps, 1e-3);
  const sx = (t) => L + (t / duration) * (W - L - R);
  const sy = (p) => T + (1 - p) * (H - T - B);
  state.scaleX = sx;
  svgEl("line", { x1: L, y1: sy(0), x2: W - R, y2: sy(0), class: "axis" }, svg);
  svgEl("line", { x1: L, y1: sy(0), x2: L, y2: sy(1), class: "axis" }, svg);
  for (const p of [0, 0.5, 1]) svgEl("text", { x: 4, y: sy(p) + 4, class: "axis-text" }, svg).textContent = p.toFixed(1);
  const ticks = Math.min(10, Math.floor(duration));
  for (let i = 0; i <= ticks; i++) {
    const t = (duration * i) / Math.max(ticks, 1);
    svgEl("text", { x: sx(t) - 8, y: H - 8, class: "axis-text" }, svg).textContent = t.toFixed(1) + "s";
  }
  const legend = $("legend");
  legend.replaceChildren();
  ans.aus.forEach((au, k) => {
    const key = "AU" + au, colour = COLOURS[k % COLOURS.length];
    const pts = rows.map((r) => `${sx(r.timestamp).toFixed(1)},${sy(r.probs[key]).toFixed(1)}`).join(" ");
    svgEl("polyline", { points: pts, class: "au-line", stroke: colour, "data-au": key }, svg);
    const item = document.createElement("span");
    item.style.setProperty("--c", colour);
    item.textContent = key + (state.auNames[key] ? " " + state.auNames[key] : "");
    legend.appendChild(item);
  });
  svgEl("line", { x1: L, y1: sy(0), x2: L, y2: sy(1), class: "cursor" }, svg);
  svg.onclick = (ev) => {
    const box = svg.getBoundingClientRect();
    const x = ((ev.clientX - box.left) / box.width) * W;
    $("clip").currentTime = Math.max(0, Math.min(duration, ((x - L) / (W - L - R)) * duration));
  };
}

// ---------------------------------------------------------------- camera
// The browser's camera streamed to /v1/stream: one JPEG frame in flight at a time (the next is
// taken when the answer comes, so nothing queues), the answer's boxes and AU bars drawn live.
const camera = { stream: null, ws: null, canvas: document.createElement("canvas"), answered: 0, dropped: 0 };

async function startCamera() {
  const cam = $("cam");
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640 }, audio: false });
  } catch (e) {
    setStatus("The camera could not be opened: " + e, true);
    return;
  }
  for (const el of [$("photo"), $("clip")]) { el.hidden = true; el.removeAttribute("src"); }
  $("timeline-section").hidden = true;
  $("face-tabs").replaceChildren();
  $("members").textContent = "";
  cam.hidden = false;
  cam.srcObject = camera.stream;
  await cam.play();
  $("result").hidden = false;
  state.kind = "camera"; state.face = 0; camera.answered = 0; camera.dropped = 0;
  if (Object.keys(state.auNames).length === 0) await loadModels();
  const key = $("api-key").value.trim();
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/stream" +
    (key ? "?api_key=" + encodeURIComponent(key) : "");
  const ws = new WebSocket(url);
  camera.ws = ws;
  $("camera").textContent = "Stop camera";
  ws.onopen = () => { setStatus("Camera on: streaming …"); sendFrame(); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.rows) showLive(msg);
    else if (msg.dropped) camera.dropped += 1;
    else if (msg.error) setStatus("Frame " + msg.frame + ": " + msg.error, true);
    msg.dropped ? setTimeout(sendFrame, 100) : sendFrame();  // a frame over the rate: wait a little
  };
  ws.onclose = (ev) => {
    if (camera.ws === ws && ev.code !== 1000) setStatus("The stream closed (" + ev.code + "): " + (ev.reason || "connection lost"), true);
    if (camera.ws === ws) stopCamera(false);
  };
}

function sendFrame() {
  const cam = $("cam"), ws = camera.ws, c = camera.canvas;
  if (!ws || ws.readyState !== WebSocket.OPEN || !cam.videoWidth) {
    if (ws && ws.readyState <= WebSocket.OPEN) setTimeout(sendFrame, 50);
    return;
  }
  const scale = Math.min(1, 640 / cam.videoWidth);
  c.width = Math.round(cam.videoWidth * scale); c.height = Math.round(cam.videoHeight * scale);
  c.getContext("2d").drawImage(cam, 0, 0, c.width, c.height);
  c.toBlob((blob) => { if (blob && ws.readyState === WebSocket.OPEN) ws.send(blob); }, "image/jpeg", 0.8);
}

function showLive(msg) {
  camera.answered += 1;
  $("overlay").setAttribute("viewBox", `0 0 ${msg.width} ${msg.height}`);
  const faces = msg.rows.filter((r) => r.success === 1);
  if (!faces.some((f) => f.face_id === state.face) && faces.length) state.face = faces[0].face_id;
  drawFaces(faces);
  const f = faces.find((x) => x.face_id === state.face);
  bars(f, f ? `Action Units of face ${f.face_id} (live)` : "Action Units (no face in view)");
  setStatus(`Camera on: ${camera.answered} frames answered, ${camera.dropped} dropped, ` +
    `${Math.round(1000 * msg.seconds)} ms for the last one.`);
}

function stopCamera(close = true) {
  const ws = camera.ws;
  camera.ws = null;
  if (close && ws) ws.close(1000);
  if (camera.stream) for (const t of camera.stream.getTracks()) t.stop();
  camera.stream = null;
  $("cam").srcObject = null;
  $("camera").textContent = "Start camera";
  if (close) setStatus(`Camera off after ${camera.answered} frames.`);
}

// ---------------------------------------------------------------- shared drawing
function drawFaces(faces) {
  const svg = $("overlay");
  svg.replaceChildren();
  for (const f of faces) {
    const [x0, y0, x1, y1] = f.box;
    const g = svgEl("g", { "data-face": f.face_id }, svg);
    svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0,
      class: "face-box" + (f.face_id === state.face ? " selected" : "") }, g);
    const r = Math.max(1.5, (x1 - x0) / 90);
    for (const [x, y] of f.landmarks || []) svgEl("circle", { cx: x, cy: y, r: r, class: "landmark" }, g);
    svgEl("text", { x: x0, y: Math.max(14, y0 - 4), class: "face-label" }, g).textContent = "face " + f.face_id;
  }
}

function faceTabs(ids, redraw) {
  const tabs = $("face-tabs");
  tabs.replaceChildren();
  if (ids.length < 2) return;
  for (const id of ids) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "face " + id;
    b.setAttribute("role", "tab");
    b.setAttribute("aria-selected", String(id === state.face));
    b.onclick = () => {
      state.face = id;
      for (const other of tabs.children) other.setAttribute("aria-selected", String(other === b));
      redraw();
    };
    tabs.appendChild(b);
  }
}

function bars(face, title) {
  $("bars-title").textContent = title;
  const box = $("bars");
  box.replaceChildren();
  if (!face || !face.probs) return;
  for (const [key, p] of Object.entries(face.probs)) {
    const row = document.createElement("div");
    row.className = "au-row" + (face.occurrence && face.occurrence[key] ? " on" : "");
    row.dataset.au = key;
    row.dataset.p = String(p);
    const label = document.createElement("span");
    label.className = "au-label";
    label.textContent = key + (state.auNames[key] ? " " + state.auNames[key] : "");
    label.title = label.textContent;
    const track = document.createElement("div");
    track.className = "au-track";
    track.setAttribute("role", "meter");
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "1");
    track.setAttribute("aria-valuenow", String(p));
    track.setAttribute("aria-label", label.textContent);
    const bar = document.createElement("div");
    bar.className = "au-bar";
    bar.style.width = (100 * p).toFixed(1) + "%";
    track.appendChild(bar);
    const value = document.createElement("span");
    value.className = "au-value";
    value.textContent = p.toFixed(2);
    row.append(label, track, value);
    box.appendChild(row);
  }
}

function membersNote(ans) {
  let text = "Members voting: " + ans.members_voted.join(", ") + ".";
  if (ans.members_left_out && ans.members_left_out.length) {
    text += " Left out for still images (they need video): " + ans.members_left_out.map((m) => m.name).join(", ") + ".";
  }
  $("members").textContent = text;
}

$("camera").addEventListener("click", () => (camera.ws ? stopCamera() : startCamera()));
$("file").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  if (camera.ws) stopCamera();
  if (file) analyse(file);
});
loadModels();
