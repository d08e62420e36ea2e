// ProbeLens token heatmap (Streamlit components v2 frontend).
//
// Model output is untrusted: token text is only ever assigned with textContent.
// Payload: see core/components/heatmap.py::heatmap_payload (parallel arrays).
//
// Streamlit calls the default export again with the SAME parentElement each time the
// data changes and runs only the LAST returned cleanup at unmount, so per-instance state
// lives in a WeakMap keyed by parentElement and listeners are attached once.
//
// Edit mode (data.mode === "edit", the span editor) keeps the annotator's spans here in
// the browser and reports back only a save (setTriggerValue "save") and, debounced, a
// draft (setStateValue "draft"); see core/components/heatmap.py. The span rules mirror
// core/editing.py function by function (tests compare them on random cases).

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

function fillTooltip(tip, d, i, ed) {
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
  } else if (!ed) {
    add("gold", "—");
  }
  if (ed) editTipRows(ed, i, add);
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
  const editEl = h("div", "ple"); // the editor's toolbar, banners and status (edit mode)
  editEl.hidden = true;
  root.append(legendEl, editEl, box, tip);

  const st = {
    parentElement, root, legendEl, editEl, box, tip,
    d: null, docId: null, mode: null, legendKey: null, focus: null,
    spans: [], chunk: null, chunkCount: 0, hover: -1, renders: 0, appends: 0,
    ed: null, api: null,
  };
  const isToken = (el) =>
    !!el && el.nodeType === 1 && el.parentNode && el.parentNode.parentNode === box && el.dataset.i != null;

  const showTip = (el) => {
    const i = Number(el.dataset.i);
    if (!st.d || !(i >= 0 && i < st.d.n)) return;
    st.hover = i;
    fillTooltip(tip, st.d, i, st.ed);
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
    if (st.ed && (st.ed.drag || st.ed.nativeDrag)) return; // no tooltip while selecting
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
    attachEditor(st);
    st.attached = true;
  };
  st.cleanup = () => {
    if (!st.attached) return;
    box.removeEventListener("mouseover", onOver);
    box.removeEventListener("mouseout", onOut);
    document.removeEventListener("scroll", onDocScroll, { capture: true });
    box.removeEventListener("scroll", hideTip);
    detachEditor(st);
    hideTip();
    st.attached = false;
  };
  st.isToken = isToken;
  st.hideTip = hideTip;
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
  st.root.setAttribute("data-focus-token", String(f));
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
    mode: d.mode === "edit" ? "edit" : "view",
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
    edit: d.mode === "edit" ? normaliseEdit(d.edit, n) : null,
  };
}

function render(parentElement, data, tData, api) {
  const root = parentElement.querySelector(".plh-root");
  if (!root) return;
  const d = normalise(data);

  let st = instances.get(parentElement);
  if (!st || st.root !== root || !root.isConnected) st = createState(parentElement, root);
  else st.attach();
  if (api) st.api = api;

  st.width = st.box.clientWidth; // read before any DOM change: no forced layout
  if (st.mode === "edit" && d.mode !== "edit") {
    teardownEditor(st); // back to a plain heatmap: a full view render follows
    st.d = null;
    st.mode = null;
  }
  if (d.mode === "edit") {
    renderEdit(st, d, tData);
    return;
  }
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

// === Edit mode: the span editor ==========================================================
//
// Positions are Unicode code points of the NFC answer (the token texts joined), exactly
// as in Python. The browser's UTF-16 units appear only in `domBoundary`/`charSelection`,
// where a DOM Selection is converted on the spot.

// Label order = severity order (core/components/heatmap.py::_LABEL_PRIORITY); the rank of a
// label is its index here. Keys: core.editing's UI, 1 / 2 / 3 / 0.
const LABELS = ["Not Supported", "Insufficient Information", "Supported", "N/A"];
const LABEL_KEYS = { "1": LABELS[0], "2": LABELS[1], "3": LABELS[2], "0": LABELS[3] };
const KEY_OF_LABEL = { [LABELS[0]]: "1", [LABELS[1]]: "2", [LABELS[2]]: "3", [LABELS[3]]: "0" };
const THEIR_CLS = ["t-ns", "t-ii", "t-s", "t-na"];
const HISTORY_LIMIT = 200; // core.editing.EditHistory's default
const DRAFT_DEBOUNCE_MS = 1000;
const SAVE_CONFIRM_MS = 5000;
const MAX_EDIT_RECORDS = 5000;
// Flags per token (bit set): part of the selection / the focused span / the focused suggestion.
const F_SEL = 1;
const F_SPAN = 2;
const F_SUG = 4;

// --- span rules: mirror core/editing.py ------------------------------------------------

// Python's str.isspace() for one code point (JS \s differs: it has U+FEFF, lacks U+001C-1F, U+0085).
const SPACE_RE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;

export function isSpace(ch) {
  return SPACE_RE.test(ch);
}

// core.editing._trim on an array of code points.
export function trimRange(chars, start, end) {
  while (start < end && isSpace(chars[start])) start += 1;
  while (end > start && isSpace(chars[end - 1])) end -= 1;
  return [start, end];
}

// str.strip() (for notes)
function pyStrip(text) {
  const chars = Array.from(text);
  const [a, b] = trimRange(chars, 0, chars.length);
  return chars.slice(a, b).join("");
}

export function mkSpan(start, end, label, note) {
  return Object.freeze({ start, end, label, note: note ? note : null });
}

function sameSpan(a, b) {
  return a.start === b.start && a.end === b.end && a.label === b.label && a.note === b.note;
}

function overlap(a, b) {
  return a.start < b.end && b.start < a.end;
}

function cmpStr(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortSpans(spans) {
  return spans.slice().sort((a, b) => a.start - b.start || a.end - b.end || cmpStr(a.label, b.label));
}

function checked(span) {
  if (!(span.start >= 0) || !(span.end > span.start)) throw new Error(`span ${span.start}..${span.end} is empty or negative`);
  if (!LABELS.includes(span.label)) throw new Error(`unknown label ${span.label}`);
  return mkSpan(span.start, span.end, span.label, span.note);
}

// _absorb_same_label: grow `nw` over every same-label span it overlaps (repeating).
function absorbSameLabel(spans, nw) {
  let rest = spans.slice();
  for (;;) {
    const hits = rest.filter((s) => s.label === nw.label && overlap(s, nw));
    if (!hits.length) return [nw, rest];
    let note = nw.note;
    if (!note) {
      const withNote = hits.find((s) => s.note);
      note = withNote ? withNote.note : null;
    }
    let start = nw.start;
    let end = nw.end;
    for (const s of hits) {
      start = Math.min(start, s.start);
      end = Math.max(end, s.end);
    }
    nw = mkSpan(start, end, nw.label, note);
    rest = rest.filter((s) => !hits.some((x) => sameSpan(x, s)));
  }
}

// _cut: what is left of `span` outside `hole` (0, 1 or 2 pieces), trimmed when chars given.
function cutSpan(span, hole, chars) {
  const pieces = [[span.start, Math.min(span.end, hole.start)], [Math.max(span.start, hole.end), span.end]];
  const out = [];
  for (let [start, end] of pieces) {
    if (chars) [start, end] = trimRange(chars, start, end);
    if (start < end) out.push(mkSpan(start, end, span.label, span.note));
  }
  return out;
}

function insertSpan(spans, span, chars) {
  const [nw, rest] = absorbSameLabel(spans, span);
  const out = [nw];
  for (const s of rest) {
    if (overlap(s, nw)) out.push(...cutSpan(s, nw, chars));
    else out.push(s);
  }
  return out;
}

// normalize_spans: add the spans one by one (later spans win).
export function normalizeSpans(spans, chars) {
  let out = [];
  for (const s of spans) out = insertSpan(out, checked(s), chars);
  return sortSpans(out);
}

// add_span. `spans` must already be normalised (every list the editor holds is), so the
// normalize_spans(spans, text) step of the Python is the identity here and is skipped.
export function addSpan(spans, span, chars) {
  return sortSpans(insertSpan(spans, checked(span), chars || null));
}

export function deleteSpan(spans, index) {
  return sortSpans(spans.filter((_, i) => i !== index));
}

// relabel: re-added WITHOUT text, as in Python (pieces of others are not trimmed).
export function relabelSpan(spans, index, label) {
  const t = spans[index];
  const rest = spans.filter((_, i) => i !== index);
  return addSpan(rest, mkSpan(t.start, t.end, label, t.note), null);
}

export function setNote(spans, index, note) {
  const cleaned = pyStrip(note || "") || null;
  return sortSpans(spans.map((s, i) => (i === index ? mkSpan(s.start, s.end, s.label, cleaned) : s)));
}

// accept_suggestions (overwrite=False): suggestions in the given order; one overlapping a
// span already there (including one accepted just before) is skipped.
export function acceptSuggestions(spans, suggestions, minScore, label) {
  let out = spans.slice();
  for (const sg of suggestions) {
    if (sg.score < minScore) continue;
    const nw = mkSpan(sg.start, sg.end, label || LABELS[0], null);
    if (out.some((s) => overlap(nw, s))) continue;
    out = addSpan(out, nw, null);
  }
  return sortSpans(out);
}

export function spansKey(spans) {
  return JSON.stringify(spans.map((s) => [s.start, s.end, s.label, s.note]));
}

function spanId(s) {
  return `${s.start}:${s.end}:${s.label}`;
}

// --- positions: token-snapped and character selections ----------------------------------

// core.editing.selection_to_span (token-snapped): tokens first..last (either order), the
// smallest range over those of non-zero width (all of them if none is), trimmed.
export function tokenSelectionSpan(starts, ends, chars, a, b) {
  const first = Math.min(a, b);
  const last = Math.max(a, b);
  if (!(first >= 0 && last < starts.length)) return { error: `selected tokens ${first}..${last} are outside the ${starts.length} tokens` };
  let start = Infinity;
  let end = -Infinity;
  let wide = false;
  for (let i = first; i <= last; i++) if (starts[i] < ends[i]) wide = true;
  for (let i = first; i <= last; i++) {
    if (wide && !(starts[i] < ends[i])) continue;
    start = Math.min(start, starts[i]);
    end = Math.max(end, ends[i]);
  }
  [start, end] = trimRange(chars, Math.max(start, 0), Math.min(end, chars.length));
  if (start >= end) return { error: "the selection holds only whitespace; select a word" };
  return { start, end };
}

// Code-point position of a global UTF-16 position (snapping down inside a surrogate pair),
// and the UTF-16 position of that code point. `u16Before`/`cpBefore` are per-token prefix
// sums (n + 1 entries).
function u16ToCp(texts, u16Before, cpBefore, u) {
  const n = texts.length;
  let lo = 0;
  let hi = n; // largest i with u16Before[i] <= u
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (u16Before[mid] <= u) lo = mid;
    else hi = mid - 1;
  }
  const i = lo;
  if (i >= n) return { cp: cpBefore[n], u16: u16Before[n] };
  const text = texts[i];
  const off = u - u16Before[i];
  let units = 0;
  let cps = 0;
  for (const ch of text) {
    const w = ch.codePointAt(0) > 0xffff ? 2 : 1;
    if (units + w > off) break;
    units += w;
    cps += 1;
  }
  return { cp: cpBefore[i] + cps, u16: u16Before[i] + units };
}

// core.editing.utf16_selection_to_span over the joined token texts: global UTF-16
// positions, either order; a boundary inside a surrogate pair widens to the whole character.
export function charSelectionSpan(texts, u16Before, cpBefore, uA, uB) {
  const lo = Math.min(uA, uB);
  const hi = Math.max(uA, uB);
  if (lo < 0 || hi > u16Before[texts.length]) return { error: "selection outside the text" };
  const s = u16ToCp(texts, u16Before, cpBefore, lo);
  const e = u16ToCp(texts, u16Before, cpBefore, hi);
  let end = e.cp;
  if (e.u16 < hi) end += 1;
  if (s.cp >= end) return { error: "the selection is empty" };
  return { start: s.cp, end };
}

export function prefixSums(texts) {
  const u16Before = new Array(texts.length + 1);
  const cpBefore = new Array(texts.length + 1);
  u16Before[0] = 0;
  cpBefore[0] = 0;
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i];
    let cps = 0;
    for (let k = 0; k < t.length; k++) {
      const c = t.charCodeAt(k);
      if (c < 0xdc00 || c > 0xdfff || k === 0 || (t.charCodeAt(k - 1) & 0xfc00) !== 0xd800) cps += 1;
    }
    u16Before[i + 1] = u16Before[i] + t.length;
    cpBefore[i + 1] = cpBefore[i] + cps;
  }
  return { u16Before, cpBefore };
}


// --- edit payload ------------------------------------------------------------------------

function validSpanList(list, len) {
  if (!Array.isArray(list)) return null;
  const out = [];
  for (const s of list) {
    if (!s || typeof s !== "object") return null;
    const { start, end, label } = s;
    if (!Number.isInteger(start) || !Number.isInteger(end) || !(0 <= start && start < end && end <= len)) return null;
    if (!LABELS.includes(label)) return null;
    out.push(mkSpan(start, end, label, typeof s.note === "string" ? s.note : null));
  }
  return sortSpans(out);
}

function normaliseEdit(e, n) {
  const x = e && typeof e === "object" ? e : {};
  const ints = (a) => (Array.isArray(a) && a.length === n && a.every(Number.isInteger) ? a : null);
  const sugs = Array.isArray(x.suggestions)
    ? x.suggestions.filter((s) => s && Number.isInteger(s.start) && Number.isInteger(s.end) && s.start < s.end && finite(s.score))
    : [];
  let conflict = null;
  if (x.conflict && typeof x.conflict === "object") {
    conflict = {
      theirs: Array.isArray(x.conflict.theirs) ? x.conflict.theirs : [],
      their_version: Number.isInteger(x.conflict.their_version) ? x.conflict.their_version : null,
      saved_by: typeof x.conflict.saved_by === "string" ? x.conflict.saved_by : "",
    };
  }
  return {
    starts: ints(x.starts),
    ends: ints(x.ends),
    spans: Array.isArray(x.spans) ? x.spans : [],
    suggestions: sugs.map((s) => Object.freeze({ start: s.start, end: s.end, score: s.score })),
    base_version: Number.isInteger(x.base_version) ? x.base_version : 0,
    draft_key: typeof x.draft_key === "string" ? x.draft_key : "",
    conflict,
  };
}

// --- editor state ------------------------------------------------------------------------

function sameTexts(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function baseClass(d, i) {
  let cls = "tok";
  if (d.texts[i] === "") cls += " empty";
  const score = d.scores[i];
  if (!finite(score)) cls += " unknown";
  else if (score >= LIGHT_TEXT_FROM) cls += " hi";
  return cls;
}

function createEditor(st, d) {
  const n = d.n;
  const e = d.edit;
  let starts = e.starts;
  let ends = e.ends;
  const { u16Before, cpBefore } = prefixSums(d.texts);
  if (!starts || !ends) {
    starts = cpBefore.slice(0, n);
    ends = cpBefore.slice(1);
  }
  const chars = Array.from(d.texts.join(""));
  // Tokens are found by position with binary searches: starts non-decreasing (tokenizer
  // offsets are repaired so) and a running maximum of the ends.
  let monotone = true;
  const maxEnd = new Array(n);
  for (let i = 0; i < n; i++) {
    if (i && starts[i] < starts[i - 1]) monotone = false;
    maxEnd[i] = Math.max(i ? maxEnd[i - 1] : -Infinity, ends[i]);
  }
  const ed = {
    st, n, texts: d.texts, starts, ends, chars, u16Before, cpBefore, maxEnd, monotone,
    base: baseClassList(d),
    lab: new Int8Array(n).fill(-1), // drawn label rank per token
    thr: new Int8Array(n).fill(-1), // "theirs" label rank per token (conflict)
    sugN: new Int16Array(n), // visible suggestions covering the token
    flags: new Uint8Array(n),
    dirty: new Uint8Array(n),
    dirtyList: [],
    cur: [], undo: [], redo: [],
    focus: null, focusFlag: null, scrollTo: -1, // focus: {kind: "span", id} | {kind: "sug", k}
    sel: null, // {kind: "tok", a, b} | {kind: "char", start, end}
    anchor: null,
    drag: null, nativeDrag: null, precise: false,
    sugs: e.suggestions, sugVisible: new Uint8Array(e.suggestions.length), rejected: new Set(),
    showTheirs: false, conflict: null, conflictKey: "", resolved: null, theirs: [],
    docId: d.doc_id, draftKey: e.draft_key, baseVersion: e.base_version,
    props: { base: e.base_version, spans: [], key: "" }, pendingSave: null,
    draftTimer: 0, draftHeld: false, saving: false, savingTimer: 0, lastDraftSent: "", restored: null, saves: 0, msg: "", msgKind: "info",
    noteFor: null, sugKey: "",
    ui: null, bulkMin: 0.8,
  };
  st.ed = ed;
  ed.props.spans = validSpanList(e.spans, chars.length) || [];
  ed.props.key = spansKey(ed.props.spans);
  ed.cur = ed.props.spans;
  ed.lastDraftSent = ed.props.key + "@" + e.base_version;
  return ed;
}

function baseClassList(d) {
  const out = new Array(d.n);
  for (let i = 0; i < d.n; i++) out[i] = baseClass(d, i);
  return out;
}

// Tokens [lo, hi) that may overlap [a, b): everything outside surely does not.
function tokenWindow(ed, a, b) {
  if (!ed.monotone) return [0, ed.n];
  let lo = 0;
  let hi = ed.n;
  while (lo < hi) { // first i with maxEnd[i] > a
    const mid = (lo + hi) >> 1;
    if (ed.maxEnd[mid] > a) hi = mid;
    else lo = mid + 1;
  }
  const first = lo;
  hi = ed.n;
  while (lo < hi) { // first i with starts[i] >= b
    const mid = (lo + hi) >> 1;
    if (ed.starts[mid] >= b) hi = mid;
    else lo = mid + 1;
  }
  return [first, lo];
}

function tokenOverlaps(ed, i, a, b) {
  return ed.starts[i] < ed.ends[i] && ed.starts[i] < b && a < ed.ends[i];
}

// Tokens overlapping [a, b) (non-zero width), as [first, last] or null.
function tokensOf(ed, a, b) {
  const [lo, hi] = tokenWindow(ed, a, b);
  let first = -1;
  let last = -1;
  for (let i = lo; i < hi; i++) {
    if (tokenOverlaps(ed, i, a, b)) {
      if (first < 0) first = i;
      last = i;
    }
  }
  return first < 0 ? null : [first, last];
}

function markDirty(ed, i) {
  if (!ed.dirty[i]) {
    ed.dirty[i] = 1;
    ed.dirtyList.push(i);
  }
}

function setFlag(ed, first, last, flag, on) {
  for (let i = first; i <= last; i++) {
    const had = (ed.flags[i] & flag) !== 0;
    if (had !== on) {
      ed.flags[i] ^= flag;
      markDirty(ed, i);
    }
  }
}

// First span (index) of a sorted, disjoint-per-label list whose end is > pos.
function firstSpanEndingAfter(spans, pos) {
  let lo = 0;
  let hi = spans.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (spans[mid].end > pos) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// Recompute the drawn label of the tokens that may overlap [a, b).
function relabelTokens(ed, a, b, spans, arr) {
  const [lo, hi] = tokenWindow(ed, a, b);
  if (lo >= hi) return;
  const from = ed.starts[lo];
  let to = -Infinity;
  for (let i = lo; i < hi; i++) to = Math.max(to, ed.ends[i]);
  const fresh = new Int8Array(hi - lo).fill(-1);
  // Spans of one label never overlap and same-label ones are merged, so `end` grows with
  // `start`: a binary search finds the first candidate. (Not for theirs: scan those.)
  const k0 = arr === ed.lab ? Math.max(0, firstSpanEndingAfter(spans, from) - 1) : 0;
  for (let k = k0; k < spans.length; k++) {
    const s = spans[k];
    if (s.start >= to) break;
    if (s.end <= from) continue;
    const r = LABELS.indexOf(s.label);
    const [wlo, whi] = tokenWindow(ed, s.start, s.end);
    for (let i = Math.max(wlo, lo); i < Math.min(whi, hi); i++) {
      if (tokenOverlaps(ed, i, s.start, s.end) && (fresh[i - lo] < 0 || r < fresh[i - lo])) fresh[i - lo] = r;
    }
  }
  for (let i = lo; i < hi; i++) {
    if (arr[i] !== fresh[i - lo]) {
      arr[i] = fresh[i - lo];
      markDirty(ed, i);
    }
  }
}

function paintToken(ed, i) {
  const el = ed.st.spans[i];
  let cls = ed.base[i];
  const r = ed.lab[i];
  if (r >= 0) cls += " " + GOLD[LABELS[r]].cls;
  if (ed.showTheirs && ed.thr[i] >= 0) cls += " " + THEIR_CLS[ed.thr[i]];
  if (ed.sugN[i] > 0) cls += " sug";
  const f = ed.flags[i];
  if (f & F_SUG) cls += " fsug";
  if (f & F_SPAN) cls += " fspan";
  if (f & F_SEL) cls += " sel";
  if (el.className !== cls) el.className = cls;
}

function flush(ed) {
  const list = ed.dirtyList;
  for (let k = 0; k < list.length; k++) {
    const i = list[k];
    ed.dirty[i] = 0;
    paintToken(ed, i);
  }
  ed.dirtyList = [];
  return list.length;
}

// --- suggestions -------------------------------------------------------------------------

function spanOverlapping(spans, a, b) {
  const k = firstSpanEndingAfter(spans, a);
  // the first span ending after `a` starts before `b`? (check a neighbour too: a long
  // span of another label cannot overlap, but a same-start ordering quirk could)
  for (let j = Math.max(0, k - 1); j < Math.min(spans.length, k + 2); j++) {
    if (spans[j].start < b && a < spans[j].end) return true;
  }
  return false;
}

function updateSuggestions(ed) {
  for (let k = 0; k < ed.sugs.length; k++) {
    const sg = ed.sugs[k];
    const vis = !ed.rejected.has(k) && !spanOverlapping(ed.cur, sg.start, sg.end) ? 1 : 0;
    if (vis !== ed.sugVisible[k]) {
      ed.sugVisible[k] = vis;
      const r = tokensOf(ed, sg.start, sg.end);
      if (r) {
        for (let i = r[0]; i <= r[1]; i++) {
          ed.sugN[i] += vis ? 1 : -1;
          markDirty(ed, i);
        }
      }
    }
  }
  if (ed.focus && ed.focus.kind === "sug" && !ed.sugVisible[ed.focus.k]) focusTo(ed, null);
}

function visibleSuggestionIndexes(ed) {
  const out = [];
  for (let k = 0; k < ed.sugs.length; k++) if (ed.sugVisible[k]) out.push(k);
  return out;
}

// --- focus and selection -----------------------------------------------------------------

function focusIndex(ed) {
  if (!ed.focus || ed.focus.kind !== "span") return -1;
  const id = ed.focus.id;
  for (let k = 0; k < ed.cur.length; k++) if (spanId(ed.cur[k]) === id) return k;
  return -1;
}

// The one place the focus changes: clears the old focus flags, sets the new ones. A focus
// on a span that no longer exists (or a hidden suggestion) becomes no focus.
function focusTo(ed, focus, scroll) {
  if (ed.focusFlag) {
    const { r, flag } = ed.focusFlag;
    setFlag(ed, r[0], r[1], flag, false);
    ed.focusFlag = null;
  }
  let range = null;
  let flag = 0;
  if (focus && focus.kind === "span") {
    const s = ed.cur.find((x) => spanId(x) === focus.id);
    if (s) {
      range = tokensOf(ed, s.start, s.end);
      flag = F_SPAN;
    } else {
      focus = null;
    }
  } else if (focus && focus.kind === "sug") {
    const sg = ed.sugs[focus.k];
    if (sg && ed.sugVisible[focus.k]) {
      range = tokensOf(ed, sg.start, sg.end);
      flag = F_SUG;
    } else {
      focus = null;
    }
  } else {
    focus = null;
  }
  ed.focus = focus;
  if (range) {
    setFlag(ed, range[0], range[1], flag, true);
    ed.focusFlag = { r: range, flag };
    if (scroll) ed.scrollTo = range[0];
  }
}

function focusOnSpan(span) {
  return span ? { kind: "span", id: spanId(span) } : null;
}

function selRange(ed, sel) {
  if (!sel) return null;
  if (sel.kind === "tok") return [Math.min(sel.a, sel.b), Math.max(sel.a, sel.b)];
  return tokensOf(ed, sel.start, sel.end);
}

function setSelection(ed, sel) {
  const old = selRange(ed, ed.sel);
  const nw = selRange(ed, sel);
  if (old && nw) {
    // only the tokens whose membership changes
    const lo = Math.min(old[0], nw[0]);
    const hi = Math.max(old[1], nw[1]);
    for (let i = lo; i <= hi; i++) {
      const inNew = i >= nw[0] && i <= nw[1];
      const had = (ed.flags[i] & F_SEL) !== 0;
      if (had !== inNew) {
        ed.flags[i] ^= F_SEL;
        markDirty(ed, i);
      }
    }
  } else {
    if (old) setFlag(ed, old[0], old[1], F_SEL, false);
    if (nw) setFlag(ed, nw[0], nw[1], F_SEL, true);
  }
  ed.sel = sel;
  if (!sel || sel.kind === "tok") clearNativeSelection(ed);
}

function selectionSpan(ed) {
  const sel = ed.sel;
  if (!sel) return { error: "select a span first: drag over the text (Alt: exact characters)" };
  if (sel.kind === "char") return { start: sel.start, end: sel.end };
  return tokenSelectionSpan(ed.starts, ed.ends, ed.chars, sel.a, sel.b);
}

function nativeSelection(ed) {
  const pe = ed.st.parentElement;
  try {
    if (pe && typeof pe.getSelection === "function") return pe.getSelection(); // a ShadowRoot (Chromium)
  } catch (err) {
    // fall through
  }
  return document.getSelection();
}

function clearNativeSelection(ed) {
  const sel = nativeSelection(ed);
  if (sel && sel.rangeCount && !sel.isCollapsed) sel.removeAllRanges();
}

// A DOM boundary (node, offset) in the text box as (token, UTF-16 offset in its text).
function domBoundary(ed, node, offset) {
  const box = ed.st.box;
  const tokenOf = (el) => (el && el.nodeType === 1 && el.dataset && el.dataset.i != null && el.parentNode && el.parentNode.parentNode === box ? Number(el.dataset.i) : -1);
  if (node.nodeType === 3) {
    const i = tokenOf(node.parentNode);
    return i < 0 ? null : { i, off: offset };
  }
  const self = tokenOf(node);
  if (self >= 0) return { i: self, off: offset === 0 ? 0 : ed.texts[self].length };
  if (node !== box && node.parentNode !== box) return null;
  // a chunk or the box: the boundary is before child `offset`
  const kids = node.childNodes;
  const firstToken = (el) => (tokenOf(el) >= 0 ? tokenOf(el) : el.firstChild ? tokenOf(el.firstChild) : -1);
  const lastToken = (el) => (tokenOf(el) >= 0 ? tokenOf(el) : el.lastChild ? tokenOf(el.lastChild) : -1);
  if (offset < kids.length) {
    const i = firstToken(kids[offset]);
    return i < 0 ? null : { i, off: 0 };
  }
  if (!kids.length) return null;
  const i = lastToken(kids[kids.length - 1]);
  return i < 0 ? null : { i, off: ed.texts[i].length };
}

// The character selection (code points) of the current DOM Selection, or null.
function readCharSelection(ed) {
  const sel = nativeSelection(ed);
  if (!sel || !sel.rangeCount || sel.isCollapsed) return null;
  const range = sel.getRangeAt(0);
  const a = domBoundary(ed, range.startContainer, range.startOffset);
  const b = domBoundary(ed, range.endContainer, range.endOffset);
  if (!a || !b) return null;
  const r = charSelectionSpan(ed.texts, ed.u16Before, ed.cpBefore, ed.u16Before[a.i] + a.off, ed.u16Before[b.i] + b.off);
  return r.error ? null : r;
}

function tokenSpanAt(ed, i) {
  // the span drawn on token i (the most severe if several)
  let best = null;
  for (const s of ed.cur) {
    if (s.start >= ed.ends[i]) break;
    if (tokenOverlaps(ed, i, s.start, s.end) && (!best || LABELS.indexOf(s.label) < LABELS.indexOf(best.label))) best = s;
  }
  return best;
}

function suggestionAt(ed, i) {
  let best = -1;
  for (let k = 0; k < ed.sugs.length; k++) {
    if (!ed.sugVisible[k]) continue;
    const sg = ed.sugs[k];
    if (tokenOverlaps(ed, i, sg.start, sg.end) && (best < 0 || sg.score > ed.sugs[best].score)) best = k;
  }
  return best;
}


// --- changing the span list ----------------------------------------------------------------

// Redraw the tokens of every span that differs between `old` and `nw` (added, removed or
// changed), and nothing else: a key press touches a handful of tokens even in a long answer.
function redrawChanged(ed, old, nw) {
  const oldIds = new Set(old.map(spanId));
  const newIds = new Set(nw.map(spanId));
  const ranges = [];
  for (const s of old) if (!newIds.has(spanId(s))) ranges.push([s.start, s.end]);
  for (const s of nw) if (!oldIds.has(spanId(s))) ranges.push([s.start, s.end]);
  ranges.sort((a, b) => a[0] - b[0]);
  let cur = null;
  for (const r of ranges) {
    if (cur && r[0] <= cur[1]) cur[1] = Math.max(cur[1], r[1]);
    else {
      if (cur) relabelTokens(ed, cur[0], cur[1], nw, ed.lab);
      cur = r.slice();
    }
  }
  if (cur) relabelTokens(ed, cur[0], cur[1], nw, ed.lab);
}

// Make `spans` current. Options: history (default true), focus (a focus; undefined keeps
// the current one), scroll, keepSel, silent (no draft report: the server's own spans).
function commit(ed, spans, opts = {}) {
  const old = ed.cur;
  const changed = spansKey(spans) !== spansKey(old);
  if (changed) {
    if (opts.history !== false) {
      ed.undo.push(old);
      if (ed.undo.length > HISTORY_LIMIT) ed.undo.shift();
      ed.redo = [];
    }
    ed.cur = spans;
    redrawChanged(ed, old, spans);
    updateSuggestions(ed);
  }
  focusTo(ed, opts.focus !== undefined ? opts.focus : ed.focus, !!opts.scroll);
  if (!opts.keepSel) {
    setSelection(ed, null);
    ed.anchor = null;
  }
  if (changed) {
    writeLocalDraft(ed);
    if (!opts.silent) scheduleDraft(ed);
  }
  return changed;
}

function containing(spans, start, end, label) {
  return spans.find((s) => s.label === label && s.start <= start && s.end >= end) || null;
}

function say(ed, text, kind) {
  ed.msg = text || "";
  ed.msgKind = kind || "info";
}

function doLabel(ed, label) {
  if (ed.sel) {
    const r = selectionSpan(ed);
    if (r.error) {
      say(ed, r.error, "error");
      return;
    }
    const nw = addSpan(ed.cur, mkSpan(r.start, r.end, label, null), ed.chars);
    commit(ed, nw, { focus: focusOnSpan(containing(nw, r.start, r.end, label)) });
    clearNativeSelection(ed);
    return;
  }
  const idx = focusIndex(ed);
  if (idx >= 0) {
    const t = ed.cur[idx];
    if (t.label === label) return;
    const nw = relabelSpan(ed.cur, idx, label);
    commit(ed, nw, { focus: focusOnSpan(containing(nw, t.start, t.end, label)) });
    return;
  }
  if (ed.focus && ed.focus.kind === "sug") {
    acceptOne(ed, ed.focus.k, label);
    return;
  }
  say(ed, "select a span first: drag over the text (hold Alt for exact characters)", "error");
}

function doDelete(ed) {
  const idx = focusIndex(ed);
  if (idx >= 0) {
    commit(ed, deleteSpan(ed.cur, idx), { focus: null });
    return;
  }
  if (ed.focus && ed.focus.kind === "sug") {
    doReject(ed);
    return;
  }
  say(ed, "no span is focused (click a span, or J / K)", "error");
}

function addedSpan(old, nw) {
  const ids = new Set(old.map(spanId));
  return nw.find((s) => !ids.has(spanId(s))) || null;
}

function doUndo(ed) {
  if (!ed.undo.length) {
    say(ed, "nothing to undo");
    return;
  }
  const prev = ed.undo.pop();
  ed.redo.push(ed.cur);
  const back = addedSpan(ed.cur, prev);
  commit(ed, prev, { history: false, focus: back ? focusOnSpan(back) : undefined });
}

function doRedo(ed) {
  if (!ed.redo.length) {
    say(ed, "nothing to redo");
    return;
  }
  const next = ed.redo.pop();
  ed.undo.push(ed.cur);
  const again = addedSpan(ed.cur, next);
  commit(ed, next, { history: false, focus: again ? focusOnSpan(again) : undefined });
}

function doStepSpan(ed, dir) {
  const n = ed.cur.length;
  if (!n) {
    say(ed, "no spans yet");
    return;
  }
  let idx = focusIndex(ed);
  if (idx < 0) {
    // from the selection (or the focused suggestion), else from the start / the end
    const r = ed.sel ? selectionSpan(ed) : ed.focus && ed.focus.kind === "sug" ? ed.sugs[ed.focus.k] : null;
    const pivot = r && !r.error ? r.start : null;
    if (pivot == null) idx = dir > 0 ? 0 : n - 1;
    else if (dir > 0) {
      idx = ed.cur.findIndex((s) => s.start >= pivot);
      if (idx < 0) idx = n - 1;
    } else {
      idx = -1;
      for (let k = 0; k < n; k++) if (ed.cur[k].start < pivot) idx = k;
      if (idx < 0) idx = 0;
    }
  } else {
    const next = idx + dir;
    if (next < 0 || next >= n) {
      say(ed, dir > 0 ? "that was the last span" : "that was the first span");
      idx = Math.max(0, Math.min(n - 1, next));
    } else {
      idx = next;
    }
  }
  setSelection(ed, null);
  focusTo(ed, focusOnSpan(ed.cur[idx]), true);
}

function doStepSuggestion(ed, dir) {
  const vis = visibleSuggestionIndexes(ed);
  if (!vis.length) return false;
  let pos = ed.focus && ed.focus.kind === "sug" ? vis.indexOf(ed.focus.k) : -1;
  if (pos < 0) {
    // start next to the focused span / selection, else at the start / end
    const idx = focusIndex(ed);
    const pivot = idx >= 0 ? ed.cur[idx].start : ed.sel && !selectionSpan(ed).error ? selectionSpan(ed).start : null;
    if (pivot == null) pos = dir > 0 ? 0 : vis.length - 1;
    else if (dir > 0) {
      pos = vis.findIndex((k) => ed.sugs[k].start >= pivot);
      if (pos < 0) pos = 0;
    } else {
      pos = vis.length - 1;
      for (let j = vis.length - 1; j >= 0; j--) {
        if (ed.sugs[vis[j]].start < pivot) {
          pos = j;
          break;
        }
      }
    }
  } else {
    pos = (pos + dir + vis.length) % vis.length; // Tab cycles
  }
  setSelection(ed, null);
  focusTo(ed, { kind: "sug", k: vis[pos] }, true);
  return true;
}

// After accepting / rejecting suggestion k: focus the next one shown (Tab-like), if any.
function focusNextSuggestionAfter(ed, k) {
  const from = ed.sugs[k];
  const vis = visibleSuggestionIndexes(ed);
  const next = vis.find((j) => ed.sugs[j].start >= from.end) ?? vis.find((j) => j !== k);
  if (next != null) focusTo(ed, { kind: "sug", k: next }, true);
  return next != null;
}

function acceptOne(ed, k, label) {
  const sg = ed.sugs[k];
  if (!sg) return;
  const nw = addSpan(ed.cur, mkSpan(sg.start, sg.end, label || LABELS[0], null), ed.chars);
  commit(ed, nw, { focus: focusOnSpan(containing(nw, sg.start, sg.end, label || LABELS[0])) });
  say(ed, `accepted suggestion (score ${sg.score.toFixed(2)}) as ${label || LABELS[0]}`);
  focusNextSuggestionAfter(ed, k);
}

function doAccept(ed) {
  if (ed.focus && ed.focus.kind === "sug") acceptOne(ed, ed.focus.k, LABELS[0]);
  else say(ed, "no suggestion is focused (Tab / Shift+Tab)", "error");
}

function doReject(ed) {
  if (!(ed.focus && ed.focus.kind === "sug")) {
    say(ed, "no suggestion is focused (Tab / Shift+Tab)", "error");
    return;
  }
  const k = ed.focus.k;
  ed.rejected.add(k);
  updateSuggestions(ed); // hides it and drops the focus
  say(ed, `rejected suggestion (score ${ed.sugs[k].score.toFixed(2)})`);
  focusNextSuggestionAfter(ed, k);
  writeLocalDraft(ed);
}

function doRestoreRejected(ed) {
  const count = ed.rejected.size;
  ed.rejected.clear();
  updateSuggestions(ed);
  say(ed, `${count} rejected suggestion${count === 1 ? "" : "s"} shown again`);
  writeLocalDraft(ed);
}

function doBulk(ed) {
  const v = Number(ed.ui.bulkInput.value);
  if (!(v >= 0 && v <= 1)) {
    say(ed, "the score for bulk accept must be a number from 0 to 1", "error");
    return;
  }
  ed.bulkMin = v;
  const shown = visibleSuggestionIndexes(ed);
  const list = shown.map((k) => ed.sugs[k]);
  const nw = acceptSuggestions(ed.cur, list, v, LABELS[0]);
  commit(ed, nw, { focus: null });
  const now = visibleSuggestionIndexes(ed);
  const taken = shown.length - now.length;
  say(ed, `accepted ${taken} suggestion${taken === 1 ? "" : "s"} with score ≥ ${v.toFixed(2)} as Not Supported`);
}

function doEscape(ed) {
  if (ed.noteFor != null) closeNote(ed);
  else if (ed.sel) {
    setSelection(ed, null);
    clearNativeSelection(ed);
  } else focusTo(ed, null);
}

function doSave(ed, next) {
  const api = ed.st.api;
  const payload = {
    spans: ed.cur.map((s) => ({ start: s.start, end: s.end, label: s.label, note: s.note })),
    base_version: ed.baseVersion,
    next: !!next,
    draft_key: ed.draftKey,
    doc_id: ed.docId,
  };
  clearTimeout(ed.draftTimer); // a draft after the save would carry the old version
  ed.draftTimer = 0;
  ed.pendingSave = { key: spansKey(ed.cur), base: ed.baseVersion };
  ed.saves += 1;
  ed.saving = true;
  clearTimeout(ed.savingTimer);
  ed.savingTimer = setTimeout(() => { // the app answers with new data (even a refusal) well before
    if (ed.st.ed === ed && ed.saving) {
      ed.saving = false;
      say(ed, "the app has not confirmed the save (yet)", "error");
      updateUi(ed);
    }
  }, SAVE_CONFIRM_MS);
  if (api && typeof api.setTriggerValue === "function") {
    api.setTriggerValue("save", payload);
    say(ed, next ? "saving… (and on to the next answer)" : "saving…");
  } else {
    say(ed, "cannot save: not connected to the app", "error");
  }
}

// --- notes -------------------------------------------------------------------------------------

function excerpt(ed, a, b, max = 60) {
  const text = ed.chars.slice(a, Math.min(b, a + max)).join("");
  return visibleWhitespace(text).replace(/␣/g, " ") + (b - a > max ? "…" : "");
}

function openNote(ed) {
  const idx = focusIndex(ed);
  if (idx < 0) {
    say(ed, "focus a span first (click it, or J / K), then N", "error");
    return;
  }
  const s = ed.cur[idx];
  ed.noteFor = spanId(s);
  ed.ui.noteLabel.textContent = `Note on «${excerpt(ed, s.start, s.end, 40)}»`;
  ed.ui.noteInput.value = s.note || "";
  ed.ui.noteRow.hidden = false;
  ed.ui.noteInput.focus({ preventScroll: true });
  ed.ui.noteInput.select();
}

function commitNote(ed) {
  const id = ed.noteFor;
  const idx = ed.cur.findIndex((s) => spanId(s) === id);
  if (idx >= 0) commit(ed, setNote(ed.cur, idx, ed.ui.noteInput.value), { focus: { kind: "span", id }, keepSel: true });
  closeNote(ed);
}

function closeNote(ed) {
  ed.noteFor = null;
  ed.ui.noteRow.hidden = true;
  ed.st.root.focus({ preventScroll: true });
}

// --- drafts ------------------------------------------------------------------------------------

function plainSpans(spans) {
  return spans.map((s) => ({ start: s.start, end: s.end, label: s.label, note: s.note }));
}

function writeLocalDraft(ed) {
  if (!ed.draftKey) return;
  try {
    const same = spansKey(ed.cur) === ed.props.key && ed.baseVersion === ed.props.base;
    if (same && !ed.rejected.size) {
      localStorage.removeItem(ed.draftKey);
      return;
    }
    const rejected = [...ed.rejected].map((k) => [ed.sugs[k].start, ed.sugs[k].end]);
    localStorage.setItem(ed.draftKey, JSON.stringify({
      v: 1, base_version: ed.baseVersion, doc_id: ed.docId, saved_at: Date.now(),
      spans: plainSpans(ed.cur), rejected,
    }));
  } catch (err) {
    // storage full or disabled: the debounced draft to the server still goes out
  }
}

function scheduleDraft(ed) {
  clearTimeout(ed.draftTimer);
  ed.draftTimer = setTimeout(() => sendDraft(ed), DRAFT_DEBOUNCE_MS);
}

function sendDraft(ed) {
  ed.draftTimer = 0;
  if (ed.st.ed !== ed) return; // another document since
  const key = spansKey(ed.cur) + "@" + ed.baseVersion;
  if (key === ed.lastDraftSent) return;
  const api = ed.st.api;
  if (!api || typeof api.setStateValue !== "function") return;
  ed.lastDraftSent = key;
  api.setStateValue("draft", {
    spans: plainSpans(ed.cur), base_version: ed.baseVersion, draft_key: ed.draftKey, doc_id: ed.docId,
    saved_at: Date.now(),
  });
  ed.st.root.setAttribute("data-drafts-sent", String((Number(ed.st.root.getAttribute("data-drafts-sent")) || 0) + 1));
}

function restoreRejected(ed, pairs) {
  if (!Array.isArray(pairs)) return;
  const want = new Set(pairs.filter(Array.isArray).map((p) => `${p[0]}:${p[1]}`));
  ed.sugs.forEach((sg, k) => {
    if (want.has(`${sg.start}:${sg.end}`)) ed.rejected.add(k);
  });
  updateSuggestions(ed);
}

function timeOf(ms) {
  const t = new Date(ms);
  return Number.isFinite(t.getTime()) ? t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "earlier";
}

function checkStoredDraft(ed) {
  if (!ed.draftKey) return;
  let raw = null;
  try {
    raw = localStorage.getItem(ed.draftKey);
  } catch (err) {
    return;
  }
  if (!raw) return;
  let dr = null;
  try {
    dr = JSON.parse(raw);
  } catch (err) {
    dr = null;
  }
  let spans = dr && validSpanList(dr.spans, ed.chars.length);
  try {
    if (spans) spans = normalizeSpans(spans, ed.chars); // whatever was stored, make it valid
  } catch (err) {
    spans = null;
  }
  const drop = () => {
    try {
      localStorage.removeItem(ed.draftKey);
    } catch (err) {
      // ignore
    }
  };
  if (!spans || !Number.isInteger(dr.base_version)) {
    drop();
    return;
  }
  const key = spansKey(spans);
  if (dr.base_version === ed.props.base) {
    restoreRejected(ed, dr.rejected);
    if (key === ed.props.key) return;
    commit(ed, spans, { focus: null }); // undoable: Ctrl+Z goes back to the saved spans
    ed.restored = { kind: "restored", at: dr.saved_at, base: dr.base_version };
    ed.st.root.setAttribute("data-draft-restored", "1");
    return;
  }
  if (key === ed.props.key) {
    drop();
    return;
  }
  ed.restored = { kind: "other", at: dr.saved_at, base: dr.base_version, spans };
}

function doDraft(ed, action) {
  const r = ed.restored;
  if (!r) return;
  if (action === "discard") {
    ed.restored = null;
    if (r.kind === "restored") commit(ed, ed.props.spans, { focus: null });
    try {
      localStorage.removeItem(ed.draftKey);
    } catch (err) {
      // ignore
    }
    say(ed, "draft discarded");
  } else if (action === "restore" && r.kind === "other") {
    ed.restored = { kind: "restored", at: r.at, base: r.base };
    commit(ed, r.spans, { focus: null });
  }
}

// --- conflict ----------------------------------------------------------------------------------

function applyConflict(ed, conflict) {
  const key = conflict ? JSON.stringify(conflict) : "";
  if (key === ed.conflictKey) return;
  ed.conflictKey = key;
  ed.conflict = conflict;
  ed.resolved = null;
  let theirs = [];
  if (conflict) {
    try {
      theirs = normalizeSpans(validSpanList(conflict.theirs, ed.chars.length) || [], ed.chars);
    } catch (err) {
      theirs = [];
    }
  }
  ed.theirs = theirs;
  for (let i = 0; i < ed.n; i++) {
    if (ed.thr[i] >= 0) {
      ed.thr[i] = -1;
      markDirty(ed, i);
    }
  }
  if (theirs.length) relabelTokens(ed, 0, Infinity, theirs, ed.thr);
  if (!conflict) ed.showTheirs = false;
}

function doConflict(ed, action) {
  const c = ed.conflict;
  if (!c) return;
  if (action === "theirs") {
    ed.showTheirs = !ed.showTheirs;
    for (let i = 0; i < ed.n; i++) if (ed.thr[i] >= 0) markDirty(ed, i);
  } else if (action === "take") {
    commit(ed, ed.theirs, { focus: null });
    if (c.their_version != null) ed.baseVersion = c.their_version;
    ed.resolved = "theirs";
    writeLocalDraft(ed);
    say(ed, "took their spans (Ctrl+Z brings yours back); save to confirm");
  } else if (action === "mine") {
    if (c.their_version != null) ed.baseVersion = c.their_version;
    ed.resolved = "mine";
    writeLocalDraft(ed);
    say(ed, "keeping your spans; save to write them over theirs");
  }
}

// --- props from the server (same document) ------------------------------------------------------

function applyProps(ed, d) {
  const e = d.edit;
  if (ed.saving) {
    // whatever the app did with the save, it has answered
    ed.saving = false;
    clearTimeout(ed.savingTimer);
    if (e.conflict) say(ed, "not saved: someone saved a newer version (see above)", "error");
  }
  const spans = validSpanList(e.spans, ed.chars.length) || [];
  const key = spansKey(spans);
  const prev = ed.props;
  if (key !== prev.key || e.base_version !== prev.base) {
    const clean = spansKey(ed.cur) === prev.key;
    const pend = ed.pendingSave;
    ed.props = { base: e.base_version, spans, key };
    if (e.conflict) {
      // never replace the person's spans while a conflict is shown
    } else if (clean) {
      commit(ed, spans, { keepSel: true, silent: true });
    } else if (pend && pend.key === key) {
      // the save went through; edits made since are kept
    } else {
      if (commit(ed, spans, { keepSel: true, silent: true })) say(ed, "the spans were changed by the app; Ctrl+Z brings yours back");
    }
    ed.baseVersion = e.base_version;
    if (pend && e.base_version !== prev.base) {
      ed.pendingSave = null;
      say(ed, `saved ✓ (version ${e.base_version})`);
    }
    ed.lastDraftSent = spansKey(ed.cur) === key ? key + "@" + e.base_version : ed.lastDraftSent;
    writeLocalDraft(ed);
  }
  // new suggestions (e.g. another threshold): keep rejections of the same ranges
  const sugKey = JSON.stringify(e.suggestions);
  if (sugKey !== ed.sugKey) {
    const rejected = [...ed.rejected].map((k) => [ed.sugs[k].start, ed.sugs[k].end]);
    for (let k = 0; k < ed.sugs.length; k++) {
      if (!ed.sugVisible[k]) continue;
      const r = tokensOf(ed, ed.sugs[k].start, ed.sugs[k].end);
      if (r) for (let i = r[0]; i <= r[1]; i++) {
        ed.sugN[i] -= 1;
        markDirty(ed, i);
      }
    }
    if (ed.focus && ed.focus.kind === "sug") focusTo(ed, null);
    ed.sugs = e.suggestions;
    ed.sugKey = sugKey;
    ed.sugVisible = new Uint8Array(ed.sugs.length);
    ed.rejected = new Set();
    restoreRejected(ed, rejected);
  }
  applyConflict(ed, e.conflict);
}


// --- the editor's controls (every key has a button) ------------------------------------------

const KEY_LEGEND = [
  ["drag", "select (whole tokens)"], ["⇧ click", "extend"], ["Alt+drag", "exact characters"],
  ["1 2 3 0", "label"], ["⌫", "delete"], ["Ctrl+Z", "undo"], ["Ctrl+⇧Z", "redo"],
  ["J K", "next / prev span"], ["N", "note"], ["Tab ⇧Tab", "suggestions"], ["A", "accept"],
  ["R", "reject"], ["Enter", "save & next"], ["Esc", "clear"],
];

function button(action, key, text, title, extra) {
  const b = h("button", "ple-btn");
  b.type = "button";
  b.tabIndex = -1; // keys go to the editor; clicking a button keeps its focus there
  b.dataset.action = action;
  if (extra) for (const [k, v] of Object.entries(extra)) b.dataset[k] = v;
  if (key) b.append(h("kbd", null, key), document.createTextNode(" "));
  b.append(document.createTextNode(text));
  b.title = title;
  return b;
}

function buildEditorUi(ed) {
  const el = ed.st.editEl;
  const ui = {};
  const bar1 = h("div", "ple-bar");
  for (const label of LABELS) {
    const g = GOLD[label];
    const b = button("label", KEY_OF_LABEL[label], g.word, `${label} (key ${KEY_OF_LABEL[label]})`, { label });
    b.prepend(h("span", "plh-sample " + g.cls, "ab"));
    bar1.append(b);
  }
  ui.del = button("delete", "⌫", "delete", "delete the focused span (Backspace / Delete)");
  ui.note = button("note", "N", "note", "add or edit a note on the focused span (N)");
  ui.undo = button("undo", "Ctrl+Z", "undo", "undo (Ctrl+Z)");
  ui.redo = button("redo", "Ctrl+⇧Z", "redo", "redo (Ctrl+Shift+Z or Ctrl+Y)");
  ui.prevSpan = button("prev-span", "K", "prev span", "focus the previous span (K)");
  ui.nextSpan = button("next-span", "J", "next span", "focus the next span (J)");
  ui.clear = button("clear", "Esc", "clear", "clear the selection / focus (Esc)");
  bar1.append(h("span", "ple-sep"), ui.del, ui.note, h("span", "ple-sep"), ui.undo, ui.redo,
    h("span", "ple-sep"), ui.prevSpan, ui.nextSpan, ui.clear);

  const bar2 = h("div", "ple-bar");
  ui.prevSug = button("prev-sug", "⇧Tab", "prev", "focus the previous probe suggestion (Shift+Tab)");
  ui.nextSug = button("next-sug", "Tab", "next", "focus the next probe suggestion (Tab)");
  ui.accept = button("accept", "A", "accept", "accept the focused suggestion as Not Supported (A)");
  ui.reject = button("reject", "R", "reject", "reject (hide) the focused suggestion (R)");
  ui.bulkInput = h("input", "ple-num");
  ui.bulkInput.type = "number";
  ui.bulkInput.min = "0";
  ui.bulkInput.max = "1";
  ui.bulkInput.step = "0.05";
  ui.bulkInput.value = String(ed.bulkMin);
  ui.bulkInput.title = "lowest score to accept";
  ui.bulkInput.setAttribute("aria-label", "bulk accept minimum score");
  ui.bulk = button("bulk", null, "accept all ≥", "accept every shown suggestion with at least this score (skips any overlapping a span)");
  ui.restoreRej = button("restore-rejected", null, "show rejected", "show the rejected suggestions again");
  const sugLabel = h("span", "ple-group", "suggestions");
  sugLabel.prepend(h("span", "ple-sug-sample", "ab"));
  ui.precise = button("precise", "Alt", "exact chars", "select exact characters instead of whole tokens (or hold Alt while dragging)");
  ui.precise.setAttribute("aria-pressed", "false");
  ui.save = button("save", null, "Save", "save (Ctrl+S)");
  ui.saveNext = button("save-next", "Enter", "Save & next", "save and go to the next answer (Enter)");
  ui.saveNext.classList.add("ple-primary");
  ui.state = h("span", "ple-state");
  bar2.append(sugLabel, ui.prevSug, ui.nextSug, ui.accept, ui.reject, ui.bulk, ui.bulkInput, ui.restoreRej,
    h("span", "ple-sep"), ui.precise, h("span", "ple-grow"), ui.state, ui.save, ui.saveNext);

  const keys = h("div", "ple-keys");
  keys.append(h("span", "ple-keys-hint"));
  for (const [k, what] of KEY_LEGEND) {
    const item = h("span", "ple-key");
    item.append(h("kbd", null, k), document.createTextNode(" " + what));
    keys.append(item);
  }
  ui.keysHint = keys.firstChild;

  ui.conflict = h("div", "ple-banner ple-conflict");
  ui.conflict.hidden = true;
  ui.draft = h("div", "ple-banner ple-draft");
  ui.draft.hidden = true;

  ui.noteRow = h("div", "ple-note");
  ui.noteRow.hidden = true;
  ui.noteLabel = h("label", "ple-note-label");
  ui.noteInput = h("input", "ple-note-input");
  ui.noteInput.type = "text";
  ui.noteInput.maxLength = 2000;
  ui.noteInput.placeholder = "verification note (Enter saves, Esc cancels)";
  ui.noteRow.append(ui.noteLabel, ui.noteInput, button("note-save", "Enter", "save note", "save the note"),
    button("note-cancel", "Esc", "cancel", "close without saving"));

  ui.status = h("div", "ple-status");
  ui.statusText = h("span", "ple-status-text");
  ui.msg = h("span", "ple-msg");
  ui.msg.setAttribute("role", "status");
  ui.status.append(ui.statusText, ui.msg);

  el.replaceChildren(bar1, bar2, keys, ui.conflict, ui.draft, ui.noteRow, ui.status);
  el.hidden = false;
  ed.ui = ui;
  ed.uiKey = "";
}

function fillConflict(ed) {
  const ui = ed.ui;
  const c = ed.conflict;
  const key = `${ed.conflictKey}|${ed.resolved}|${ed.showTheirs}`;
  if (key === ui.conflictShown) return; // rebuilt only when it changes
  ui.conflictShown = key;
  ui.conflict.hidden = !c;
  if (!c) return;
  const who = c.saved_by || "Someone";
  const v = c.their_version != null ? `version ${c.their_version}` : "a newer version";
  const parts = [];
  if (!ed.resolved) {
    parts.push(h("strong", null, `${who} saved ${v} of this answer meanwhile.`),
      document.createTextNode(" Your edits are kept here, not saved yet. "));
  } else if (ed.resolved === "theirs") {
    parts.push(h("strong", null, `Taking ${who}'s spans (${v}).`), document.createTextNode(" Save to confirm; Ctrl+Z brings yours back. "));
  } else {
    parts.push(h("strong", null, `Keeping yours over ${who}'s ${v}.`), document.createTextNode(" Save to write them. "));
  }
  const t = button("conflict-theirs", null, ed.showTheirs ? "hide theirs" : "show theirs",
    "show their spans as a bar under the text (yours stay underlined)");
  t.setAttribute("aria-pressed", ed.showTheirs ? "true" : "false");
  parts.push(t);
  if (ed.showTheirs) parts.push(h("span", "ple-theirs-sample", "theirs"));
  parts.push(button("conflict-take", null, "take theirs", "replace your spans with theirs (undoable)"),
    button("conflict-mine", null, "keep mine", "save yours over theirs with the next save"));
  ui.conflict.replaceChildren(...parts);
}

function fillDraftNote(ed) {
  const ui = ed.ui;
  const r = ed.restored;
  if (r === ui.draftShown) return;
  ui.draftShown = r;
  ui.draft.hidden = !r;
  if (!r) return;
  if (r.kind === "restored") {
    ui.draft.replaceChildren(
      h("span", "ple-draft-text", `Draft restored: unsaved edits from ${timeOf(r.at)} (kept in this browser).`),
      button("draft-discard", null, "discard draft", "go back to the saved spans"));
  } else {
    ui.draft.replaceChildren(
      h("span", "ple-draft-text", `An unsaved draft from ${timeOf(r.at)} (made on version ${r.base}; this is version ${ed.props.base}) is kept in this browser.`),
      button("draft-restore", null, "restore it", "put the draft's spans in the editor (undoable)"),
      button("draft-discard", null, "discard it", "delete the draft"));
  }
}

function statusText(ed) {
  if (ed.sel) {
    const r = selectionSpan(ed);
    if (r.error) return `Selection: ${r.error}`;
    const how = ed.sel.kind === "char" ? "exact characters" : "whole tokens";
    return `Selected «${excerpt(ed, r.start, r.end)}» (${how}) — 1 hallucinated · 2 unverifiable · 3 supported · 0 ignore`;
  }
  if (ed.focus && ed.focus.kind === "span") {
    const idx = focusIndex(ed);
    if (idx >= 0) {
      const s = ed.cur[idx];
      let t = `Span ${idx + 1}/${ed.cur.length} «${excerpt(ed, s.start, s.end)}» — ${s.label} (${GOLD[s.label].word})`;
      if (s.note) t += ` · note: ${s.note}`;
      return t;
    }
  }
  if (ed.focus && ed.focus.kind === "sug") {
    const sg = ed.sugs[ed.focus.k];
    return `Suggestion «${excerpt(ed, sg.start, sg.end)}» score ${sg.score.toFixed(2)} — A accept · R reject · 1 2 3 0 label`;
  }
  const shown = visibleSuggestionIndexes(ed).length;
  return `${ed.cur.length} span${ed.cur.length === 1 ? "" : "s"}, ${shown} suggestion${shown === 1 ? "" : "s"} shown — drag over the text to select`;
}

function updateUi(ed) {
  const ui = ed.ui;
  const st = ed.st;
  const idx = focusIndex(ed);
  const sugFocused = !!(ed.focus && ed.focus.kind === "sug");
  const shown = visibleSuggestionIndexes(ed).length;
  const dirty = spansKey(ed.cur) !== ed.props.key || ed.baseVersion !== ed.props.base;
  ui.del.disabled = idx < 0 && !sugFocused;
  ui.note.disabled = idx < 0;
  ui.undo.disabled = !ed.undo.length;
  ui.redo.disabled = !ed.redo.length;
  ui.prevSpan.disabled = ui.nextSpan.disabled = !ed.cur.length;
  ui.prevSug.disabled = ui.nextSug.disabled = !shown;
  ui.accept.disabled = ui.reject.disabled = !sugFocused;
  ui.bulk.disabled = !shown;
  ui.restoreRej.hidden = !ed.rejected.size;
  ui.restoreRej.lastChild.textContent = `show ${ed.rejected.size} rejected`;
  ui.precise.setAttribute("aria-pressed", ed.precise ? "true" : "false");
  ui.state.textContent = `v${ed.baseVersion}${ed.saving ? " · saving…" : dirty ? " · unsaved changes" : " · saved"}`;
  ui.state.classList.toggle("ple-dirty", dirty);
  ui.statusText.textContent = statusText(ed);
  ui.msg.textContent = ed.msg || "";
  ui.msg.className = "ple-msg" + (ed.msgKind === "error" ? " ple-error" : "");
  fillConflict(ed);
  fillDraftNote(ed);
  // for tests and the page: the state as attributes on the root (code points)
  const root = st.root;
  root.setAttribute("data-spans", JSON.stringify(plainSpans(ed.cur)));
  root.setAttribute("data-focus", ed.focus ? (ed.focus.kind === "span" ? `span:${idx}` : `sug:${ed.focus.k}`) : "");
  const r = ed.sel ? selectionSpan(ed) : null;
  root.setAttribute("data-selection", r && !r.error ? `${r.start}-${r.end}` : "");
  root.setAttribute("data-suggestions-shown", String(shown));
  root.setAttribute("data-base-version", String(ed.baseVersion));
  root.setAttribute("data-dirty", dirty ? "1" : "0");
  root.setAttribute("data-undo", String(ed.undo.length));
  root.setAttribute("data-redo", String(ed.redo.length));
  root.setAttribute("data-saves", String(ed.saves));
}

function editTipRows(ed, i, add) {
  const s = tokenSpanAt(ed, i);
  add("label", s ? `${s.label} (${GOLD[s.label].word})` : "—");
  if (s && s.note) add("note", s.note);
  for (let k = 0; k < ed.sugs.length; k++) {
    const sg = ed.sugs[k];
    if (!tokenOverlaps(ed, i, sg.start, sg.end)) continue;
    const state = ed.rejected.has(k) ? " (rejected)" : ed.sugVisible[k] ? "" : " (hidden: overlaps a span)";
    add("suggestion", `score ${sg.score.toFixed(3)}${state}`);
  }
  if (ed.conflict && ed.thr[i] >= 0) add("theirs", LABELS[ed.thr[i]]);
}

// --- timing (key press -> drawn) -------------------------------------------------------------

function recordEdit(ed, what, tEvent) {
  const root = ed.st.root;
  const tDom = performance.now();
  requestAnimationFrame(() => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      const tPainted = performance.now();
      const log = (window.__probelensEdit = window.__probelensEdit || []);
      log.push({ key: what, t_event: tEvent, t_dom: tDom, t_painted: tPainted, spans: ed.cur.length });
      if (log.length > MAX_EDIT_RECORDS) log.splice(0, log.length - MAX_EDIT_RECORDS);
      root.setAttribute("data-key-ms", (tPainted - tEvent).toFixed(2));
      ch.port1.close();
    };
    ch.port2.postMessage(0);
  });
}

function finish(ed, what, tEvent) {
  flush(ed);
  if (ed.scrollTo >= 0) {
    const el = ed.st.spans[ed.scrollTo];
    ed.scrollTo = -1;
    if (el) el.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  updateUi(ed);
  if (tEvent != null) recordEdit(ed, what, tEvent);
}

// --- keyboard ------------------------------------------------------------------------------------

function onEditorKey(st, e) {
  const ed = st.ed;
  if (!ed || e.isComposing) return;
  const target = e.composedPath ? e.composedPath()[0] : e.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) {
    // typing in the note or the score box: only Enter / Esc mean something here
    if (target === ed.ui.noteInput && (e.key === "Enter" || e.key === "Escape")) {
      if (e.key === "Enter") commitNote(ed);
      else closeNote(ed);
      e.preventDefault();
      e.stopPropagation();
      finish(ed, "note", e.timeStamp);
    } else if (target === ed.ui.bulkInput && e.key === "Enter") {
      say(ed, "");
      doBulk(ed);
      e.preventDefault();
      e.stopPropagation();
      st.root.focus({ preventScroll: true });
      finish(ed, "bulk", e.timeStamp);
    }
    return;
  }
  const key = e.key;
  const lower = typeof key === "string" && key.length === 1 ? key.toLowerCase() : key;
  const mod = e.ctrlKey || e.metaKey;
  const digit = !mod && !e.altKey && !e.shiftKey
    ? (LABEL_KEYS[key] ? key : ((/^(?:Digit|Numpad)([0-3])$/.exec(e.code || "") || [])[1] ?? null))
    : null;
  let act = null;
  if (mod && !e.altKey && (lower === "z" || e.code === "KeyZ")) act = e.shiftKey ? () => doRedo(ed) : () => doUndo(ed);
  else if (mod && !e.altKey && (lower === "y" || e.code === "KeyY")) act = () => doRedo(ed);
  else if (mod && !e.altKey && (lower === "s" || e.code === "KeyS")) act = e.repeat ? () => {} : () => doSave(ed, false);
  else if (mod || e.altKey) act = null;
  else if (digit != null) act = () => doLabel(ed, LABEL_KEYS[digit]);
  else if (key === "Backspace" || key === "Delete") act = () => doDelete(ed);
  else if (lower === "j") act = () => doStepSpan(ed, 1);
  else if (lower === "k") act = () => doStepSpan(ed, -1);
  else if (lower === "n") act = () => openNote(ed);
  else if (lower === "a") act = () => doAccept(ed);
  else if (lower === "r") act = () => doReject(ed);
  else if (key === "Enter" && !e.shiftKey) act = e.repeat ? () => {} : () => doSave(ed, true);
  else if (key === "Escape") act = () => doEscape(ed);
  else if (key === "Tab") {
    if (!visibleSuggestionIndexes(ed).length) return; // nothing to cycle: Tab moves on as usual
    act = () => doStepSuggestion(ed, e.shiftKey ? -1 : 1);
  }
  if (!act) return;
  e.preventDefault();
  e.stopPropagation(); // Streamlit's own shortcuts (e.g. R = rerun) must not see it
  say(ed, "");
  act();
  finish(ed, key, e.timeStamp);
}

function onEditorClick(st, e) {
  const ed = st.ed;
  if (!ed) return;
  const b = e.target && e.target.closest ? e.target.closest("button[data-action]") : null;
  if (!b || b.disabled) return;
  const a = b.dataset.action;
  say(ed, "");
  switch (a) {
    case "label": doLabel(ed, b.dataset.label); break;
    case "delete": doDelete(ed); break;
    case "note": openNote(ed); break;
    case "undo": doUndo(ed); break;
    case "redo": doRedo(ed); break;
    case "prev-span": doStepSpan(ed, -1); break;
    case "next-span": doStepSpan(ed, 1); break;
    case "clear": doEscape(ed); break;
    case "prev-sug": doStepSuggestion(ed, -1); break;
    case "next-sug": doStepSuggestion(ed, 1); break;
    case "accept": doAccept(ed); break;
    case "reject": doReject(ed); break;
    case "bulk": doBulk(ed); break;
    case "restore-rejected": doRestoreRejected(ed); break;
    case "precise": ed.precise = !ed.precise; break;
    case "save": doSave(ed, false); break;
    case "save-next": doSave(ed, true); break;
    case "note-save": commitNote(ed); break;
    case "note-cancel": closeNote(ed); break;
    case "conflict-theirs": doConflict(ed, "theirs"); break;
    case "conflict-take": doConflict(ed, "take"); break;
    case "conflict-mine": doConflict(ed, "mine"); break;
    case "draft-discard": doDraft(ed, "discard"); break;
    case "draft-restore": doDraft(ed, "restore"); break;
    default: return;
  }
  if (a !== "note" && ed.noteFor == null) st.root.focus({ preventScroll: true });
  finish(ed, "button:" + a, e.timeStamp);
}

// --- mouse -------------------------------------------------------------------------------------------

function tokenIndex(st, target) {
  return st.isToken(target) ? Number(target.dataset.i) : -1;
}

function clickToken(ed, i) {
  const s = tokenSpanAt(ed, i);
  const onFocused = s && ed.focus && ed.focus.kind === "span" && ed.focus.id === spanId(s);
  if (s && !onFocused) {
    // first click on a span focuses it (to relabel, delete, note); a second selects the token
    setSelection(ed, null);
    focusTo(ed, focusOnSpan(s));
    return;
  }
  setSelection(ed, { kind: "tok", a: i, b: i });
  const k = suggestionAt(ed, i);
  focusTo(ed, k >= 0 ? { kind: "sug", k } : null);
}

function onEditorDown(st, e) {
  const ed = st.ed;
  if (!ed || e.button !== 0) return;
  if (ed.noteFor != null) commitNote(ed); // clicking away keeps what was typed
  const i = tokenIndex(st, e.target);
  if (e.altKey || ed.precise) {
    // character precision: the browser makes the selection; read on mouseup
    ed.nativeDrag = { i };
    st.hideTip();
    return;
  }
  e.preventDefault(); // no native selection; keep the keyboard focus here
  st.root.focus({ preventScroll: true });
  if (i < 0) return;
  say(ed, "");
  if (e.shiftKey) {
    const fr = ed.focusFlag ? ed.focusFlag.r[0] : null;
    const a = ed.anchor != null ? ed.anchor : fr != null ? fr : i;
    ed.anchor = a;
    focusTo(ed, null);
    setSelection(ed, { kind: "tok", a, b: i });
    finish(ed, "shift-click", e.timeStamp);
    return;
  }
  ed.drag = { a: i, b: i, moved: false };
  st.hideTip();
}

function onEditorMove(st, e) {
  const ed = st.ed;
  if (!ed || !ed.drag) return;
  const i = tokenIndex(st, e.target);
  if (i < 0 || i === ed.drag.b) return;
  ed.drag.b = i;
  ed.drag.moved = true;
  if (ed.focus) focusTo(ed, null);
  setSelection(ed, { kind: "tok", a: ed.drag.a, b: i });
  flush(ed);
}

function onEditorUp(st, e) {
  const ed = st.ed;
  if (!ed) return;
  if (ed.drag) {
    const { a, b, moved } = ed.drag;
    ed.drag = null;
    ed.anchor = a;
    if (!moved) clickToken(ed, a);
    else setSelection(ed, { kind: "tok", a, b });
    finish(ed, moved ? "drag" : "click", e.timeStamp);
  } else if (ed.nativeDrag) {
    const nd = ed.nativeDrag;
    ed.nativeDrag = null;
    const t = e.timeStamp;
    setTimeout(() => { // the selection is final once this mouseup has been handled
      if (st.ed !== ed) return;
      const r = readCharSelection(ed);
      if (r) {
        focusTo(ed, null);
        setSelection(ed, { kind: "char", start: r.start, end: r.end });
        ed.anchor = null;
      } else if (nd.i >= 0) {
        clickToken(ed, nd.i);
      }
      finish(ed, "alt-select", t);
    }, 0);
  }
}

function attachEditor(st) {
  if (!st.editorHandlers) {
    st.editorHandlers = {
      key: (e) => onEditorKey(st, e),
      click: (e) => onEditorClick(st, e),
      btnDown: (e) => {
        const b = e.target && e.target.closest ? e.target.closest("button") : null;
        if (b && st.ed) e.preventDefault(); // keep the keyboard focus on the editor
      },
      down: (e) => onEditorDown(st, e),
      move: (e) => onEditorMove(st, e),
      up: (e) => onEditorUp(st, e),
    };
  }
  const hd = st.editorHandlers;
  st.root.addEventListener("keydown", hd.key);
  st.editEl.addEventListener("click", hd.click);
  st.editEl.addEventListener("mousedown", hd.btnDown);
  st.box.addEventListener("mousedown", hd.down);
  st.box.addEventListener("mousemove", hd.move);
  window.addEventListener("mouseup", hd.up);
  if (st.ed && st.ed.draftHeld) {
    st.ed.draftHeld = false;
    scheduleDraft(st.ed); // a draft held back while detached
  }
}

function detachEditor(st) {
  const hd = st.editorHandlers;
  if (!hd) return;
  st.root.removeEventListener("keydown", hd.key);
  st.editEl.removeEventListener("click", hd.click);
  st.editEl.removeEventListener("mousedown", hd.btnDown);
  st.box.removeEventListener("mousedown", hd.down);
  st.box.removeEventListener("mousemove", hd.move);
  window.removeEventListener("mouseup", hd.up);
  if (st.ed) {
    st.ed.drag = null;
    st.ed.nativeDrag = null;
    if (st.ed.draftTimer) {
      // unmounted (or a superseded update): no state update for a widget that may be
      // gone; the draft is in localStorage, and goes out if this instance comes back
      clearTimeout(st.ed.draftTimer);
      st.ed.draftTimer = 0;
      st.ed.draftHeld = true;
    }
  }
}

function teardownEditor(st) {
  const ed = st.ed;
  if (ed) clearTimeout(ed.savingTimer);
  if (ed && ed.draftTimer) {
    // another document: its draft stays in localStorage (restored when it comes back);
    // no server draft now, it would name a document no longer shown
    clearTimeout(ed.draftTimer);
    ed.draftTimer = 0;
  }
  st.ed = null;
  st.editEl.replaceChildren();
  st.editEl.hidden = true;
  st.root.classList.remove("edit");
  st.root.removeAttribute("tabindex");
  for (const a of ["data-spans", "data-focus", "data-selection", "data-suggestions-shown", "data-base-version",
    "data-dirty", "data-undo", "data-redo", "data-saves", "data-key-ms", "data-draft-restored", "data-drafts-sent"]) {
    st.root.removeAttribute(a);
  }
}

// --- rendering in edit mode ----------------------------------------------------------------------

function sameInts(a, b) {
  if (!a || !b || a.length !== b.length) return a === b;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function renderEdit(st, d, tData) {
  let ed = st.ed;
  const same = !!ed && st.mode === "edit" && ed.draftKey === d.edit.draft_key && sameTexts(ed.texts, d.texts)
    && sameInts(st.d.edit.starts, d.edit.starts) && sameInts(st.d.edit.ends, d.edit.ends);
  if (!same) {
    if (ed) teardownEditor(st);
    fullRender(st, d);
    ed = createEditor(st, d);
    ed.sugKey = JSON.stringify(d.edit.suggestions);
    buildLegend(st.legendEl, d);
    st.legendKey = legendKey(d);
    buildEditorUi(ed);
    st.root.classList.add("edit");
    st.root.tabIndex = 0;
    st.root.setAttribute("aria-label", "span editor: select text, then label it with the keys 1 2 3 0");
    relabelTokens(ed, 0, Infinity, ed.cur, ed.lab);
    updateSuggestions(ed);
    applyConflict(ed, d.edit.conflict);
    for (let i = 0; i < ed.n; i++) markDirty(ed, i);
    st.d = d;
    checkStoredDraft(ed);
    finish(ed, "mount", null);
    const active = document.activeElement;
    if (!active || active === document.body) st.root.focus({ preventScroll: true });
  } else {
    // the same document again (a rerun): new scores are restyled, new props merged
    const prev = st.d;
    for (let i = 0; i < d.n; i++) {
      if (prev.scores[i] !== d.scores[i]) {
        ed.base[i] = baseClass(d, i);
        st.spans[i].style.backgroundColor = scoreColor(d.scores[i]);
        markDirty(ed, i);
      }
    }
    st.d = d;
    ed.docId = d.doc_id;
    applyProps(ed, d);
    finish(ed, "update", null);
  }
  st.box.style.maxHeight = d.height ? `${d.height}px` : "";
  st.box.classList.toggle("scrolling", !!d.height);
  st.docId = d.doc_id;
  st.mode = "edit";
  applyFocus(st, d, !same);
  st.refreshTip();
  recordPaint(st, d, tData, same ? "update" : "full", 0);
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
    render(job.parentElement, job.data, job.tData, job.api);
  }
};

export default function heatmap(component) {
  const job = {
    parentElement: component.parentElement,
    data: component.data,
    api: { setTriggerValue: component.setTriggerValue, setStateValue: component.setStateValue },
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
