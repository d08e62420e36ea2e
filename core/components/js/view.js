// view.js — drawing the tokens: classes and colours, chunks, the legend, focus, appends.
//
// Model output is untrusted: token text is only ever assigned with textContent, and no
// DOM is built from strings (h() below). The view knows nothing of the editor: edit mode
// repaints token classes itself (editor.js) from the same base classes.

// eslint-disable-next-line no-unused-vars
const View = (() => {
"use strict";

const { STOPS, GOLD, OUTCOMES, OUTCOME_WORDS, LINE_CLS, finite, scoreColor, lineTone, isLight, unknownColor } = Colour;

// Tokens go into block "chunks" that end right after a token whose text ends with a
// newline (so the line layout is exactly that of one flow: a block ending in "\n" adds no
// line). Chunks have content-visibility:auto, so off-screen text is not laid out or
// painted: about half the paint time for 5,000 tokens.
const MIN_CHUNK_TOKENS = 24;

/** An element with a class and text (text is never parsed as HTML). */
function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text != null) el.textContent = text;
  return el;
}

function visibleWhitespace(text) {
  if (text === "") return "∅";
  return text.replace(/ /g, "␣").replace(/\n/g, "⏎").replace(/\t/g, "→").replace(/\r/g, "␍");
}

// --- per token -------------------------------------------------------------------------

function prediction(d, i) {
  if (d.pred) return d.pred[i] ? 1 : 0;
  const s = d.scores[i];
  return finite(s) ? (s >= d.threshold ? 1 : 0) : null;
}

/** "TP" / "FP" / "FN" / null (its Python twin for the tests: tests/support/heatmap_reference.py). */
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

/** The classes every mode shares: empty piece, unknown score, light text, line tone. */
function baseClass(d, i) {
  let cls = "tok";
  if (d.texts[i] === "") cls += " empty";
  const score = d.scores[i];
  if (!finite(score)) cls += " unknown";
  else if (isLight(score)) cls += " hi"; // light text: see Colour.textColor()
  const tone = lineTone(score); // lines that keep their contrast: see Colour.LINE_COLOURS
  if (tone) cls += " " + LINE_CLS[tone];
  return cls;
}

/** Outlined as at or over the threshold: only with the threshold control and nothing else to outline. */
function over(d, i) {
  const s = d.scores[i];
  return d.threshold_control && !d.gold && !d.pred && d.texts[i] !== "" && finite(s) && s >= d.threshold;
}

function styleToken(el, d, i) {
  let cls = "tok";
  if (d.texts[i] === "") cls += " empty";
  const label = d.gold ? d.gold[i] : null;
  if (label != null && GOLD[label]) cls += " " + GOLD[label].cls;
  const o = outcome(d, i);
  if (o) cls += " o-" + o.toLowerCase();
  else if (!d.gold && d.pred && d.pred[i]) cls += " flag";
  else if (over(d, i)) cls += " over";
  const score = d.scores[i];
  if (!finite(score)) cls += " unknown";
  else if (isLight(score)) cls += " hi";
  const tone = lineTone(score);
  if (tone) cls += " " + LINE_CLS[tone];
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

// --- legend ----------------------------------------------------------------------------

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
  if (d.threshold_control) {
    // A control in the page's browser: moving it outlines tokens at or over it, with no rerun.
    const input = h("input", "plh-thr-input");
    Object.assign(input, { type: "range", min: "0", max: "1", step: "0.01", value: String(d.threshold) });
    input.setAttribute("aria-label", "risk threshold: tokens at or over it are outlined");
    const sample = h("span", "plh-sample plh-box-sample over", "abc");
    thr.append(h("span", "plh-thr-sample"), input, sample, h("span", "plh-thr-text"));
  } else {
    thr.append(h("span", "plh-thr-sample"), document.createTextNode(`threshold ${d.threshold.toFixed(2)}`));
  }
  parts.push(h("span", "plh-title", "probe score"), scale, thr);

  const unknown = h("span", "plh-item");
  const sw = h("span", "plh-swatch");
  sw.style.backgroundColor = unknownColor();
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
  return `${d.threshold}|${d.gold ? 1 : 0}|${d.pred ? 1 : 0}|${d.threshold_control ? 1 : 0}`;
}

/** The legend, rebuilt only when what it shows changes (or `force`). */
function legend(st, d, force) {
  const key = legendKey(d);
  if (force || key !== st.legendKey) {
    buildLegend(st.legendEl, d);
    st.legendKey = key;
    const input = st.legendEl.querySelector(".plh-thr-input");
    if (input) input.addEventListener("input", () => setThreshold(st, Number(input.value)));
  }
  if (d.threshold_control) thresholdText(st, d);
}

/** "N tokens at or over T (outlined)" beside the control; the root's data-threshold for tests. */
function thresholdText(st, d) {
  let count = 0;
  for (let i = 0; i < d.n; i++) if (over(d, i)) count += 1;
  const text = st.legendEl.querySelector(".plh-thr-text");
  if (text) text.textContent = `${count} token${count === 1 ? "" : "s"} at or over ${d.threshold.toFixed(2)} outlined`;
  st.root.setAttribute("data-threshold", d.threshold.toFixed(2));
  st.root.setAttribute("data-over-count", String(count));
}

/** The legend's threshold control moved: restyle the tokens here, in the browser (no rerun). */
function setThreshold(st, value) {
  const d = st.d;
  if (!d || !d.threshold_control || !finite(value)) return;
  st.thrOverride = Math.min(1, Math.max(0, value));
  d.threshold = st.thrOverride;
  for (let i = 0; i < st.spans.length && i < d.n; i++) styleToken(st.spans[i], d, i);
  const mark = st.legendEl.querySelector(".plh-thr");
  if (mark) {
    mark.style.left = `${d.threshold * 100}%`;
    mark.title = `threshold ${d.threshold.toFixed(2)}`;
  }
  st.legendKey = legendKey(d);
  thresholdText(st, d);
}

/** The browser-side threshold holds over streamed updates until the page sends another one. */
function keepThreshold(st, d) {
  if (!d.threshold_control) {
    st.thrOverride = null;
    return;
  }
  if (st.thrPage !== d.threshold) st.thrOverride = null; // the page's own value changed: it wins
  st.thrPage = d.threshold;
  if (st.thrOverride != null) d.threshold = st.thrOverride;
}

// --- chunks, full render, appends ------------------------------------------------------

function newChunk(st, parent) {
  const c = document.createElement("div");
  c.className = "plh-chunk";
  parent.appendChild(c);
  st.chunk = c;
  st.chunkCount = 0;
  st.chunkChars = 0;
  return c;
}

// Placeholder height for a chunk while it is off-screen and not yet laid out.
function sizeHint(st, c) {
  const perLine = Math.max(20, Math.floor((st.width || 700) / 8)); // ~8 px per character
  const lines = Math.max(1, Math.ceil(st.chunkChars / perLine));
  c.style.containIntrinsicSize = `auto ${lines * 27}px`;
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

/** The previous data's tokens are the leading tokens of `d` (same ids and texts). */
function sameLeading(prev, d) {
  if (prev.n > d.n) return false;
  const a = prev.ids, b = d.ids, ta = prev.texts, tb = d.texts;
  for (let i = 0; i < prev.n; i++) {
    if (a[i] !== b[i] || ta[i] !== tb[i]) return false;
  }
  return true;
}

function fullRender(st, d) {
  const frag = document.createDocumentFragment();
  st.spans = [];
  st.chunk = null;
  placeTokens(st, d, 0, frag);
  st.box.replaceChildren(frag);
  st.renders += 1;
}

// Restyle the tokens whose score / gold / prediction changed, append the new ones.
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

/** A new focus token (or `force`): scroll it into view and flash it. */
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

/** The text box's height cap, and the state attributes tests and pages read. */
function finishRender(st, d) {
  st.box.style.maxHeight = d.height ? `${d.height}px` : "";
  st.box.classList.toggle("scrolling", !!d.height);
  const root = st.root;
  root.setAttribute("data-token-count", String(d.n));
  root.setAttribute("data-renders", String(st.renders));
  root.setAttribute("data-appends", String(st.appends));
  root.setAttribute("data-doc-id", d.doc_id || "");
}

/**
 * View mode: append when the same document grew, else render it all.
 * @returns {string} "append" or "full"
 */
function render(st, d) {
  keepThreshold(st, d);
  const prev = st.d;
  const incremental = prev !== null && st.docId === d.doc_id && st.mode === d.mode && sameLeading(prev, d);
  if (incremental) appendRender(st, prev, d);
  else fullRender(st, d);
  legend(st, d, !incremental);
  st.d = d;
  st.docId = d.doc_id;
  st.mode = d.mode;
  finishRender(st, d);
  applyFocus(st, d, !incremental);
  return incremental ? "append" : "full";
}

return {
  h, visibleWhitespace, outcome, baseClass, legend, fullRender, applyFocus, finishRender, render,
};
})();
