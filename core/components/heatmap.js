// ProbeLens token heatmap (Streamlit components v2 frontend).
//
// Model output is untrusted: token text is only ever assigned with textContent.
// Payload: see core/components/heatmap.py::heatmap_payload (parallel arrays).
//
// Streamlit calls the default export again with the SAME parentElement each time the
// data changes and runs only the LAST returned cleanup at unmount, so per-instance state
// lives in a WeakMap keyed by parentElement and listeners are attached once.

// --- colour scale: mirrors core/components/heatmap.py exactly --------------------------
const STOPS = [
  [0.0, [255, 255, 255]],
  [0.25, [255, 237, 160]],
  [0.5, [254, 178, 76]],
  [0.75, [240, 59, 40]],
  [1.0, [165, 0, 38]],
];
const UNKNOWN_COLOR = "#e0e0e0";
const DARK_TEXT = "#000000";
const LIGHT_TEXT = "#ffffff";
const LIGHT_TEXT_FROM = 0.8;
const GOLD = {
  "Not Supported": { cls: "g-ns", color: "#c2185b", word: "hallucinated", value: 1 },
  "Insufficient Information": { cls: "g-ii", color: "#7b1fa2", word: "unverifiable", value: 1 },
  Supported: { cls: "g-s", color: "#2e7d32", word: "supported", value: 0 },
  "N/A": { cls: "g-na", color: "#8a8a8a", word: "ignore", value: null },
};
const OUTCOMES = {
  TP: "flagged, gold hallucinated",
  FP: "flagged, gold not hallucinated",
  FN: "missed, gold hallucinated",
};
const OUTCOME_WORDS = { TP: "true positive", FP: "false positive", FN: "missed" };
const MAX_PAINT_RECORDS = 5000;
// Tokens go into block "chunks" that end right after a token whose text ends with a
// newline (so the line layout is exactly that of one flow: a block ending in "\n" adds no
// line). Chunks have content-visibility:auto, so off-screen text is not laid out or
// painted: about half the paint time for 5,000 tokens.
const MIN_CHUNK_TOKENS = 24;

function hex2(v) {
  return (v < 16 ? "0" : "") + v.toString(16);
}

function finite(x) {
  return typeof x === "number" && Number.isFinite(x);
}

function computeColor(s) {
  for (let k = 1; k < STOPS.length; k++) {
    const [p1, c1] = STOPS[k];
    if (s <= p1) {
      const [p0, c0] = STOPS[k - 1];
      const t = (s - p0) / (p1 - p0);
      let out = "#";
      for (let j = 0; j < 3; j++) out += hex2(Math.floor(c0[j] + (c1[j] - c0[j]) * t + 0.5));
      return out;
    }
  }
  const last = STOPS[STOPS.length - 1][1];
  return "#" + hex2(last[0]) + hex2(last[1]) + hex2(last[2]);
}

const colorCache = new Map(); // scores arrive rounded to 4 decimals: at most 10,001 entries

export function scoreColor(score) {
  if (!finite(score)) return UNKNOWN_COLOR;
  const s = Math.min(1, Math.max(0, score));
  let c = colorCache.get(s);
  if (c === undefined) {
    c = computeColor(s);
    if (colorCache.size < 20000) colorCache.set(s, c);
  }
  return c;
}

export function textColor(score) {
  return finite(score) && score >= LIGHT_TEXT_FROM ? LIGHT_TEXT : DARK_TEXT;
}

export function visibleWhitespace(text) {
  if (text === "") return "∅";
  return text.replace(/ /g, "␣").replace(/\n/g, "⏎").replace(/\t/g, "→").replace(/\r/g, "␍");
}

// --- per-token logic -------------------------------------------------------------------

function prediction(d, i) {
  if (d.pred) return d.pred[i] ? 1 : 0;
  const s = d.scores[i];
  return finite(s) ? (s >= d.threshold ? 1 : 0) : null;
}

function outcome(d, i) {
  if (!d.gold || d.texts[i] === "") return null;
  const label = d.gold[i];
  const g = label == null ? 0 : GOLD[label] ? GOLD[label].value : null;
  const p = prediction(d, i);
  if (g == null || p == null) return null;
  if (p && g) return "TP";
  if (p) return "FP";
  if (g) return "FN";
  return null;
}

function styleToken(el, d, i) {
  const score = d.scores[i];
  let cls = "tok";
  if (d.texts[i] === "") cls += " empty";
  const label = d.gold ? d.gold[i] : null;
  if (label != null && GOLD[label]) cls += " " + GOLD[label].cls;
  const o = outcome(d, i);
  if (o) cls += " o-" + o.toLowerCase();
  else if (!d.gold && d.pred && d.pred[i]) cls += " flag";
  if (!finite(score)) cls += " unknown";
  else if (score >= LIGHT_TEXT_FROM) cls += " hi"; // light text: see textColor()
  el.className = cls;
  el.style.backgroundColor = scoreColor(score);
}

function makeToken(d, i) {
  const el = document.createElement("span");
  el.textContent = d.texts[i];
  el.dataset.i = String(i);
  styleToken(el, d, i);
  return el;
}

// --- DOM building helpers (never innerHTML) --------------------------------------------

function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text != null) el.textContent = text;
  return el;
}

function buildLegend(legendEl, d) {
  const parts = [];
  const scale = h("div", "plh-scale");
  const bar = h("div", "plh-bar");
  bar.style.background =
    "linear-gradient(to right, " +
    STOPS.map(([p, c]) => `rgb(${c[0]}, ${c[1]}, ${c[2]}) ${p * 100}%`).join(", ") +
    ")";
  const mark = h("div", "plh-thr");
  mark.style.left = `${d.threshold * 100}%`;
  mark.title = `threshold ${d.threshold.toFixed(2)}`;
  bar.appendChild(mark);
  scale.append(h("span", "plh-end", "0"), bar, h("span", "plh-end", "1"));
  const thr = h("span", "plh-item plh-thr-item");
  thr.append(h("span", "plh-thr-sample"), document.createTextNode(`threshold ${d.threshold.toFixed(2)}`));
  parts.push(h("span", "plh-title", "probe score"), scale, thr);

  const unknown = h("span", "plh-item");
  const sw = h("span", "plh-swatch");
  sw.style.backgroundColor = UNKNOWN_COLOR;
  unknown.append(sw, document.createTextNode("not scored"));
  parts.push(unknown);

  if (d.gold) {
    for (const [label, g] of Object.entries(GOLD)) {
      const item = h("span", "plh-item");
      item.title = `gold: ${label}`;
      const sample = h("span", "plh-sample " + g.cls, "abc");
      item.append(sample, document.createTextNode(g.word));
      parts.push(item);
    }
    for (const [o, what] of Object.entries(OUTCOMES)) {
      const item = h("span", "plh-item");
      item.title = what;
      const sample = h("span", "plh-sample plh-box-sample o-" + o.toLowerCase(), "abc");
      item.append(sample, document.createTextNode(`${o} ${OUTCOME_WORDS[o]}`));
      parts.push(item);
    }
  } else if (d.pred) {
    const item = h("span", "plh-item");
    item.append(h("span", "plh-sample plh-box-sample flag", "abc"), document.createTextNode("predicted span"));
    parts.push(item);
  }
  legendEl.replaceChildren(...parts);
}

function legendKey(d) {
  return `${d.threshold}|${d.gold ? 1 : 0}|${d.pred ? 1 : 0}`;
}

function fmt(x, digits) {
  return finite(x) ? x.toFixed(digits) : "—";
}

function fillTooltip(tip, d, i) {
  const rows = [];
  const head = h("div", "plh-tip-text", visibleWhitespace(d.texts[i]));
  rows.push(head);
  const add = (k, v) => {
    const row = h("div", "plh-tip-row");
    row.append(h("span", "plh-tip-k", k), h("span", "plh-tip-v", v));
    rows.push(row);
  };
  add("token", `#${i}  id ${d.ids[i]}`);
  add("score", finite(d.scores[i]) ? fmt(d.scores[i], 3) : "— (not scored yet)");
  add("logprob", fmt(d.logprobs[i], 3));
  add("entropy", fmt(d.entropies[i], 3));
  if (d.gold) {
    const label = d.gold[i];
    add("gold", label == null ? "— (outside gold spans)" : `${label} (${GOLD[label] ? GOLD[label].word : "?"})`);
    const o = outcome(d, i);
    if (o) add("outcome", `${o}: ${OUTCOMES[o]}`);
  } else {
    add("gold", "—");
  }
  tip.replaceChildren(...rows);
}

// --- instance state --------------------------------------------------------------------

const instances = new WeakMap(); // parentElement -> state

function createState(parentElement, root) {
  root.replaceChildren();
  const legendEl = h("div", "plh-legend");
  const box = h("div", "plh-text");
  box.setAttribute("role", "document");
  const tip = h("div", "plh-tip");
  tip.setAttribute("role", "tooltip");
  tip.hidden = true;
  root.append(legendEl, box, tip);

  const st = {
    root, legendEl, box, tip,
    d: null, docId: null, mode: null, legendKey: null, focus: null,
    spans: [], chunk: null, chunkCount: 0, hover: -1, renders: 0, appends: 0,
  };
  const isToken = (el) =>
    !!el && el.nodeType === 1 && el.parentNode && el.parentNode.parentNode === box && el.dataset.i != null;

  const showTip = (el) => {
    const i = Number(el.dataset.i);
    if (!st.d || !(i >= 0 && i < st.d.n)) return;
    st.hover = i;
    fillTooltip(tip, st.d, i);
    tip.hidden = false;
    // position: fixed, in viewport coordinates, so no ancestor's overflow clips it.
    const rects = el.getClientRects();
    const r = rects.length ? rects[0] : el.getBoundingClientRect();
    const tipW = tip.offsetWidth;
    const tipH = tip.offsetHeight;
    const vw = document.documentElement.clientWidth || window.innerWidth;
    const vh = document.documentElement.clientHeight || window.innerHeight;
    const left = Math.max(4, Math.min(r.left, vw - tipW - 4));
    const below = r.bottom + 6;
    const top = below + tipH <= vh - 4 || r.top - tipH - 6 < 0 ? below : r.top - tipH - 6;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  };
  const hideTip = () => {
    st.hover = -1;
    tip.hidden = true;
  };
  const onDocScroll = () => {
    if (!root.isConnected) st.cleanup(); // unmounted without a cleanup call
    else hideTip();
  };
  const onOver = (e) => {
    const el = e.target;
    if (isToken(el)) showTip(el);
  };
  const onOut = (e) => {
    const to = e.relatedTarget;
    if (!isToken(to)) hideTip();
  };
  // Listeners are attached while the instance is live. Streamlit calls a returned
  // cleanup at unmount, but also right away for an update that was superseded while the
  // module loaded; so cleanup only detaches, and the next call on the same element
  // re-attaches and keeps the DOM (no re-render, no second "mount").
  st.attached = false;
  st.attach = () => {
    if (st.attached) return;
    box.addEventListener("mouseover", onOver);
    box.addEventListener("mouseout", onOut);
    // Any scroll (page or text box) moves the token away from the tooltip; scroll
    // events are not composed, so the box inside the shadow root needs its own.
    document.addEventListener("scroll", onDocScroll, { capture: true, passive: true });
    box.addEventListener("scroll", hideTip, { passive: true });
    st.attached = true;
  };
  st.cleanup = () => {
    if (!st.attached) return;
    box.removeEventListener("mouseover", onOver);
    box.removeEventListener("mouseout", onOut);
    document.removeEventListener("scroll", onDocScroll, { capture: true });
    box.removeEventListener("scroll", hideTip);
    hideTip();
    st.attached = false;
  };
  st.refreshTip = () => {
    if (st.hover >= 0 && st.hover < st.spans.length) showTip(st.spans[st.hover]);
  };
  st.attach();
  instances.set(parentElement, st);
  window.__probelensMounts = (window.__probelensMounts || 0) + 1;
  return st;
}

function sameLeading(prev, d) {
  if (prev.n > d.n) return false;
  const a = prev.ids, b = d.ids, ta = prev.texts, tb = d.texts;
  for (let i = 0; i < prev.n; i++) {
    if (a[i] !== b[i] || ta[i] !== tb[i]) return false;
  }
  return true;
}

function newChunk(st, parent) {
  const c = document.createElement("div");
  c.className = "plh-chunk";
  parent.appendChild(c);
  st.chunk = c;
  st.chunkCount = 0;
  st.chunkChars = 0;
  return c;
}

// Place tokens [from, d.n) into chunks under `parent` (a fragment or the box).
function placeTokens(st, d, from, parent) {
  let c = st.chunk;
  for (let i = from; i < d.n; i++) {
    if (!c) c = newChunk(st, parent);
    const el = makeToken(d, i);
    st.spans.push(el);
    c.appendChild(el);
    st.chunkCount += 1;
    st.chunkChars += d.texts[i].length;
    if (st.chunkCount >= MIN_CHUNK_TOKENS && d.texts[i].endsWith("\n")) {
      sizeHint(st, c);
      c = st.chunk = null;
    }
  }
}

// Placeholder height for a chunk while it is off-screen and not yet laid out.
function sizeHint(st, c) {
  const perLine = Math.max(20, Math.floor((st.width || 700) / 8)); // ~8 px per character
  const lines = Math.max(1, Math.ceil(st.chunkChars / perLine));
  c.style.containIntrinsicSize = `auto ${lines * 27}px`;
}

function fullRender(st, d) {
  const frag = document.createDocumentFragment();
  st.spans = [];
  st.chunk = null;
  placeTokens(st, d, 0, frag);
  st.box.replaceChildren(frag);
  st.renders += 1;
}

function appendRender(st, prev, d) {
  const restyleAll =
    prev.threshold !== d.threshold || !prev.gold !== !d.gold || !prev.pred !== !d.pred;
  for (let i = 0; i < prev.n; i++) {
    if (
      restyleAll ||
      prev.scores[i] !== d.scores[i] ||
      (d.gold && prev.gold[i] !== d.gold[i]) ||
      (d.pred && prev.pred[i] !== d.pred[i])
    ) {
      styleToken(st.spans[i], d, i);
    }
  }
  if (d.n > prev.n) {
    const atBottom = !!d.height && st.box.scrollHeight - st.box.scrollTop - st.box.clientHeight < 8;
    placeTokens(st, d, prev.n, st.box); // into the open chunk, then new chunks
    if (d.height && atBottom) st.box.scrollTop = st.box.scrollHeight;
  }
  st.appends += 1;
}

function applyFocus(st, d, force) {
  const f = d.focus;
  if (f == null) {
    st.focus = null;
    return;
  }
  if (!(f >= 0 && f < st.spans.length)) return; // not arrived yet: applied once it has
  if (!force && f === st.focus) return;
  st.focus = f;
  const el = st.spans[f];
  el.scrollIntoView({ block: "center", inline: "nearest", behavior: "smooth" });
  el.classList.remove("flash");
  void el.offsetWidth; // restart the animation
  el.classList.add("flash");
  el.addEventListener("animationend", () => el.classList.remove("flash"), { once: true });
}

function recordPaint(st, d, tData, kind, prevCount) {
  const root = st.root;
  const tDom = performance.now();
  root.setAttribute("data-render-ms", (tDom - tData).toFixed(2));
  root.setAttribute("data-token-count", String(d.n));
  root.setAttribute("data-renders", String(st.renders));
  root.setAttribute("data-appends", String(st.appends));
  root.setAttribute("data-doc-id", d.doc_id || "");
  const pa = d.produced_at;
  let newest = null;
  let producedNew = null;
  if (Array.isArray(pa)) {
    newest = pa.length ? pa[pa.length - 1] : null;
    producedNew = pa.slice(prevCount, d.n);
  } else if (finite(pa)) {
    newest = pa;
  }
  requestAnimationFrame(() => {
    const tFrame = performance.now();
    // A task posted from rAF runs after this frame's style, layout and paint.
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      const tPainted = performance.now();
      const log = (window.__probelensPaint = window.__probelensPaint || []);
      log.push({
        count: d.n, kind, doc_id: d.doc_id || "", t_data: tData, t_dom: tDom,
        t_frame: tFrame, t_painted: tPainted, wall_painted: Date.now(),
        produced_at: newest, produced_new: producedNew,
      });
      if (log.length > MAX_PAINT_RECORDS) log.splice(0, log.length - MAX_PAINT_RECORDS);
      root.setAttribute("data-paint-ms", (tPainted - tData).toFixed(2));
      ch.port1.close();
    };
    ch.port2.postMessage(0);
  });
}

function normalise(data) {
  const d = data && typeof data === "object" ? data : {};
  const texts = Array.isArray(d.texts) ? d.texts.map((t) => (typeof t === "string" ? t : String(t ?? ""))) : [];
  const n = texts.length;
  const col = (x) => (Array.isArray(x) && x.length === n ? x : new Array(n).fill(null));
  return {
    doc_id: typeof d.doc_id === "string" ? d.doc_id : "",
    mode: d.mode === "edit" ? "edit" : "view", // edit mode (selection) is a later issue
    threshold: finite(d.threshold) ? Math.min(1, Math.max(0, d.threshold)) : 0.5,
    n,
    texts,
    ids: col(d.ids),
    scores: col(d.scores),
    logprobs: col(d.logprobs),
    entropies: col(d.entropies),
    gold: Array.isArray(d.gold) && d.gold.length === n ? d.gold : null,
    pred: Array.isArray(d.pred) && d.pred.length === n ? d.pred : null,
    focus: Number.isInteger(d.focus) ? d.focus : null,
    height: Number.isInteger(d.height) && d.height > 0 ? d.height : null,
    produced_at: d.produced_at ?? null,
  };
}

function render(parentElement, data, tData) {
  const root = parentElement.querySelector(".plh-root");
  if (!root) return;
  const d = normalise(data);

  let st = instances.get(parentElement);
  if (!st || st.root !== root || !root.isConnected) st = createState(parentElement, root);
  else st.attach();

  st.width = st.box.clientWidth; // read before any DOM change: no forced layout
  const prev = st.d;
  const incremental = prev !== null && st.docId === d.doc_id && st.mode === d.mode && sameLeading(prev, d);
  const prevCount = incremental ? prev.n : 0;
  if (incremental) appendRender(st, prev, d);
  else fullRender(st, d);

  const lk = legendKey(d);
  if (!incremental || lk !== st.legendKey) {
    buildLegend(st.legendEl, d);
    st.legendKey = lk;
  }
  st.box.style.maxHeight = d.height ? `${d.height}px` : "";
  st.box.classList.toggle("scrolling", !!d.height);
  st.d = d;
  st.docId = d.doc_id;
  st.mode = d.mode;
  applyFocus(st, d, !incremental);
  st.refreshTip();
  recordPaint(st, d, tData, incremental ? "append" : "full", prevCount);
}

// One task hop before rendering. Streamlit calls the cleanup of an update that was
// superseded while the module loaded in a microtask right after our call returns; such a
// call can even arrive AFTER the newer one (seen on cold loads: 5 tokens, then 4). Its
// cleanup runs before the next task, so cancelling the pending render drops stale data.
const renderQueue = [];
const renderChannel = new MessageChannel();
renderChannel.port1.onmessage = () => {
  const jobs = renderQueue.splice(0, renderQueue.length);
  for (const job of jobs) {
    if (job.cancelled) continue;
    job.done = true;
    render(job.parentElement, job.data, job.tData);
  }
};

export default function heatmap(component) {
  const job = {
    parentElement: component.parentElement,
    data: component.data,
    tData: performance.now(),
    cancelled: false,
    done: false,
  };
  renderQueue.push(job);
  if (renderQueue.length === 1) renderChannel.port2.postMessage(0);
  return () => {
    if (!job.done) {
      job.cancelled = true; // superseded before it rendered (or unmounted meanwhile)
      return;
    }
    const st = instances.get(job.parentElement);
    if (st) st.cleanup(); // unmount: detach listeners
  };
}
