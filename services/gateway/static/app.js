// Spotter's page to try a model: plain script, no build step, nothing fetched but the gateway's own API.
//
// A detector is asked once per image, model, version and tile choice, with min_score=0; the min score slider then
// filters on the page. The JSON shown is that answer filtered to the slider, which is what :detect answers when
// asked with min_score set to the slider's value (the request line above the JSON says so).
"use strict";

const QUERY_FLOOR = 0; // ask for every box; the slider filters
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const $ = (id) => document.getElementById(id);

const state = { models: [], file: null, bitmap: null, answer: null, kind: null, asked: 0 };

function colorOf(classId) {
  return PALETTE[(classId - 1 + PALETTE.length) % PALETTE.length];
}

function setStatus(kind, text) {
  document.body.dataset.state = kind; // loading | idle | busy | done | error (the tests wait on it)
  $("status").textContent = text;
  $("status").className = kind;
}

async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const key = $("api-key").value.trim();
  if (key) headers.set("X-API-Key", key);
  const response = await fetch(path, { ...init, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

function selectedModel() {
  return state.models.find((m) => m.name === $("model").value) || null;
}

// The version entry that answers the current choice: the number chosen, a label's target, or the latest AVAILABLE.
function selectedVersion() {
  const model = selectedModel();
  if (!model) return null;
  const available = model.versions.filter((v) => v.state === "AVAILABLE");
  const choice = $("version").value;
  let number = Math.max(...available.map((v) => v.version));
  if (choice.startsWith("label:")) number = model.version_labels[choice.slice(6)];
  else if (choice) number = Number(choice);
  return available.find((v) => v.version === number) || null;
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

function fillVersions() {
  const model = selectedModel();
  const versions = model ? model.versions.filter((v) => v.state === "AVAILABLE") : [];
  const select = $("version");
  select.replaceChildren(option("", "latest"));
  for (const v of versions.sort((a, b) => b.version - a.version)) {
    select.append(option(String(v.version), `${v.version} (${v.kind || "unknown"})`));
  }
  for (const [label, number] of Object.entries(model ? model.version_labels : {})) {
    select.append(option(`label:${label}`, `${label} → ${number}`));
  }
}

function showKind() {
  const version = selectedVersion();
  state.kind = version ? version.kind : null;
  document.body.dataset.kind = state.kind || "";
}

async function loadModels() {
  try {
    const body = await api("v1/models");
    state.models = body.models.filter((m) => m.versions.some((v) => v.state === "AVAILABLE"));
  } catch (error) {
    setStatus("error", `Could not list the models: ${error.message}`);
    return;
  }
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => option(m.name, m.name)));
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && state.models.some((m) => m.name === wanted)) select.value = wanted;
  fillVersions();
  showKind();
  if (!state.models.length) setStatus("error", "The model server has no model with an AVAILABLE version.");
  else setStatus("idle", "Choose an image.");
}

function requestPath(forDisplay) {
  const model = selectedModel();
  const params = new URLSearchParams();
  const choice = $("version").value;
  if (choice.startsWith("label:")) params.set("label", choice.slice(6));
  else if (choice) params.set("version", choice);
  let verb = "classify";
  if (state.kind === "classifier") {
    params.set("top_k", $("top-k").value);
  } else {
    verb = "detect";
    params.set("min_score", forDisplay ? Number($("min-score").value).toFixed(2) : String(QUERY_FLOOR));
    params.set("tile", $("tile").value);
  }
  return `v1/models/${encodeURIComponent(model.name)}:${verb}?${params}`;
}

async function ask() {
  if (!state.file || !selectedModel()) return;
  const asked = ++state.asked; // a later question makes this one's answer stale
  setStatus("busy", `Asking ${selectedModel().name}…`);
  try {
    const answer = await api(requestPath(false), {
      method: "POST",
      body: state.file,
      headers: { "Content-Type": state.file.type || "application/octet-stream" },
    });
    if (asked !== state.asked) return;
    state.answer = answer;
    render();
    setStatus("done", `${answer.model} version ${answer.version} answered.`);
  } catch (error) {
    if (asked !== state.asked) return;
    state.answer = null;
    render();
    setStatus("error", error.message);
  }
}

function visibleDetections() {
  const floor = Number($("min-score").value);
  return state.answer && state.answer.detections ? state.answer.detections.filter((d) => d.score >= floor) : [];
}

function render() {
  $("min-score-value").textContent = Number($("min-score").value).toFixed(2);
  drawImage();
  const answer = state.answer;
  if (answer && answer.detections) {
    const shown = visibleDetections();
    drawBoxes(shown);
    listDetections(shown);
    $("request").textContent = `POST ${requestPath(true)}`;
    $("json").textContent = JSON.stringify({ ...answer, detections: shown }, null, 2);
  } else if (answer && answer.predictions) {
    listDetections([]);
    drawBars(answer.predictions);
    $("request").textContent = `POST ${requestPath(true)}`;
    $("json").textContent = JSON.stringify(answer, null, 2);
  } else {
    listDetections([]);
    drawBars([]);
    $("request").textContent = "";
    $("json").textContent = "";
  }
}

function drawImage() {
  const canvas = $("canvas");
  const bitmap = state.bitmap;
  canvas.width = bitmap ? bitmap.width : 0;
  canvas.height = bitmap ? bitmap.height : 0;
  if (bitmap) canvas.getContext("2d").drawImage(bitmap, 0, 0);
}

function drawBoxes(detections) {
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  // In pixels of the image: the canvas is shown scaled down to fit, so a large image gets thicker lines and type.
  const side = Math.max(canvas.width, canvas.height);
  const line = Math.max(2, Math.round(side / 640));
  const fontSize = Math.max(12, Math.round(side / 60));
  context.font = `${fontSize}px sans-serif`;
  context.textBaseline = "top";
  // Lowest score first, so the best boxes are drawn on top.
  for (const d of [...detections].reverse()) {
    const { xmin, ymin, xmax, ymax } = d.box;
    const color = colorOf(d.class_id);
    context.lineWidth = line;
    context.strokeStyle = color;
    context.strokeRect(xmin, ymin, xmax - xmin, ymax - ymin);
    const text = `${d.label} ${d.score.toFixed(2)}`;
    const width = context.measureText(text).width + 2 * line;
    const top = ymin - fontSize - line >= 0 ? ymin - fontSize - line : ymin;
    context.fillStyle = color;
    context.fillRect(xmin - line / 2, top, width, fontSize + line);
    context.fillStyle = "#fff";
    context.fillText(text, xmin - line / 2 + line, top + line / 2);
  }
}

function listDetections(detections) {
  $("count").textContent = state.answer && state.answer.detections ? `(${detections.length})` : "";
  $("detections").replaceChildren(
    ...detections.map((d) => {
      const item = document.createElement("li");
      Object.assign(item.dataset, {
        label: d.label,
        classId: d.class_id,
        score: d.score,
        color: colorOf(d.class_id),
        xmin: d.box.xmin,
        ymin: d.box.ymin,
        xmax: d.box.xmax,
        ymax: d.box.ymax,
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colorOf(d.class_id);
      const b = d.box;
      const text = ` ${d.label} ${d.score.toFixed(3)} at (${b.xmin.toFixed(0)}, ${b.ymin.toFixed(0)})–`;
      item.append(swatch, text + `(${b.xmax.toFixed(0)}, ${b.ymax.toFixed(0)})`);
      return item;
    }),
  );
}

function drawBars(predictions) {
  $("top-k-bars").replaceChildren(
    ...predictions.map((p) => {
      const item = document.createElement("li");
      Object.assign(item.dataset, { label: p.label, classId: p.class_id, score: p.score });
      const name = document.createElement("span");
      name.className = "bar-label";
      name.textContent = p.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${(100 * p.score).toFixed(1)}%`;
      const score = document.createElement("span");
      score.className = "bar-score";
      score.textContent = p.score.toFixed(3);
      item.append(name, bar, score);
      return item;
    }),
  );
}

async function useFile(file) {
  if (!file) return;
  state.file = file;
  state.answer = null;
  try {
    state.bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    state.bitmap = null; // not an image the browser can show: the gateway still says why it refuses it
  }
  render();
  await ask();
}

function wire() {
  $("model").addEventListener("change", () => {
    fillVersions();
    showKind();
    ask();
  });
  $("version").addEventListener("change", () => {
    showKind();
    ask();
  });
  $("tile").addEventListener("change", ask);
  $("top-k").addEventListener("change", ask);
  $("min-score").addEventListener("input", render);
  $("file").addEventListener("change", (event) => useFile(event.target.files[0]));
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    useFile(event.dataTransfer.files[0]);
  });
}

wire();
loadModels();
