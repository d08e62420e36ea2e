// spans.js — the span rules of core/text/editing.py, function by function.
//
// Pure: no DOM, no editor state; every function returns new frozen spans. Positions are
// Unicode code points of the NFC answer, exactly as in Python; `chars` is that answer as
// an array of code points (Array.from(text)). Browsers count UTF-16 units: only
// charSelectionSpan/prefixSums know about them.
//
// Loadable on its own (a plain script, or node: `require("./spans.js")`): the parity tests
// in tests/test_components.py run this file alone against core.text.editing.

/**
 * A labelled span, code points of the NFC answer (frozen).
 * @typedef {Object} Span
 * @property {number} start
 * @property {number} end        exclusive; start < end
 * @property {string} label      one of LABELS
 * @property {?string} note      verification note, stripped; null when empty
 */
/**
 * A probe suggestion: a run of tokens over the threshold (core.text.editing.Suggestion).
 * @typedef {Object} Suggestion
 * @property {number} start
 * @property {number} end
 * @property {number} score      rounded to 4 decimals
 */

// eslint-disable-next-line no-unused-vars
const Spans = (() => {
"use strict";

// Label names in severity order, from the payload's style (configure); the rank of a label
// is its index here. Filled in place, so names other files took at load time stay valid.
const LABELS = [];
const HISTORY_LIMIT = 200; // core.text.editing.EditHistory's default

/** Take the label names of the payload's style (core/components/heatmap_data.py::style_payload). */
function configure(style) {
  if (style && Array.isArray(style.labels)) LABELS.splice(0, LABELS.length, ...style.labels.map((l) => l.name));
}

// Python's str.isspace() for one code point (JS \s differs: it has U+FEFF, lacks U+001C-1F, U+0085).
const SPACE_RE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;

function isSpace(ch) {
  return SPACE_RE.test(ch);
}

// core.text.editing.is_edge_punctuation: Unicode punctuation (P*) but "%‰‱٪#@&-", which
// may belong to what is marked ("72%", "-40").
const PUNCT_RE = /^\p{P}$/u;
const KEEP_PUNCT = "%\u2030\u2031\u066a#@&-";

function isEdgePunct(ch) {
  return PUNCT_RE.test(ch) && !KEEP_PUNCT.includes(ch);
}

// core.text.editing._trim on an array of code points.
function trimRange(chars, start, end) {
  while (start < end && isSpace(chars[start])) start += 1;
  while (end > start && isSpace(chars[end - 1])) end -= 1;
  return [start, end];
}

// core.text.editing._trim_selection: whitespace, then punctuation and whitespace at both
// ends; punctuation alone stays selected (trimmed of whitespace only).
function trimSelection(chars, start, end) {
  [start, end] = trimRange(chars, start, end);
  let a = start;
  let b = end;
  while (a < b && (isSpace(chars[a]) || isEdgePunct(chars[a]))) a += 1;
  while (b > a && (isSpace(chars[b - 1]) || isEdgePunct(chars[b - 1]))) b -= 1;
  return a < b ? [a, b] : [start, end];
}

// str.strip() (for notes)
function pyStrip(text) {
  const chars = Array.from(text);
  const [a, b] = trimRange(chars, 0, chars.length);
  return chars.slice(a, b).join("");
}

/** @returns {Span} */
function mkSpan(start, end, label, note) {
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

function sortSpans(spans) {
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

/** normalise_spans: add the spans one by one (later spans win). @returns {Span[]} */
function normaliseSpans(spans, chars) {
  let out = [];
  for (const s of spans) out = insertSpan(out, checked(s), chars);
  return sortSpans(out);
}

/** add_span. `spans` must already be normalised (every list the editor holds is), so the
 * normalise_spans(spans, text) step of the Python is the identity here and is skipped. */
function addSpan(spans, span, chars) {
  return sortSpans(insertSpan(spans, checked(span), chars || null));
}

function deleteSpan(spans, index) {
  return sortSpans(spans.filter((_, i) => i !== index));
}

/** relabel: re-added WITHOUT text, as in Python (pieces of others are not trimmed). */
function relabelSpan(spans, index, label) {
  const t = spans[index];
  const rest = spans.filter((_, i) => i !== index);
  return addSpan(rest, mkSpan(t.start, t.end, label, t.note), null);
}

function setNote(spans, index, note) {
  const cleaned = pyStrip(note || "") || null;
  return sortSpans(spans.map((s, i) => (i === index ? mkSpan(s.start, s.end, s.label, cleaned) : s)));
}

/** accept_suggestions (overwrite=False): suggestions in the given order; one overlapping a
 * span already there (including one accepted just before) is skipped. */
function acceptSuggestions(spans, suggestions, minScore, label) {
  let out = spans.slice();
  for (const sg of suggestions) {
    if (sg.score < minScore) continue;
    const nw = mkSpan(sg.start, sg.end, sg.label || label || LABELS[0], sg.note || null);
    if (out.some((s) => overlap(nw, s))) continue;
    out = addSpan(out, nw, null);
  }
  return sortSpans(out);
}

/** A string that is equal for equal span lists (order, labels and notes included). */
function spansKey(spans) {
  return JSON.stringify(spans.map((s) => [s.start, s.end, s.label, s.note]));
}

/** Identity of a span across edits of its note (the focus follows it). */
function spanId(s) {
  return `${s.start}:${s.end}:${s.label}`;
}

function plainSpans(spans) {
  return spans.map((s) => ({ start: s.start, end: s.end, label: s.label, note: s.note }));
}

/** A list from outside (the payload, localStorage) as sorted frozen spans within [0, len),
 * or null if anything in it is malformed. Not normalised. */
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

// --- positions: token-snapped and character selections ----------------------------------

/** core.text.editing.selection_to_span (token-snapped): tokens first..last (either order),
 * the smallest range over those of non-zero width (all of them if none is), trimmed of
 * whitespace and of punctuation at its ends (trimSelection).
 * @returns {{start: number, end: number} | {error: string}} */
function tokenSelectionSpan(starts, ends, chars, a, b) {
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
  [start, end] = trimSelection(chars, Math.max(start, 0), Math.min(end, chars.length));
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

/** core.text.editing.utf16_selection_to_span over the joined token texts: global UTF-16
 * positions, either order; a boundary inside a surrogate pair widens to the whole character. */
function charSelectionSpan(texts, u16Before, cpBefore, uA, uB) {
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

/** Per-token prefix sums of UTF-16 units and code points (n + 1 entries each). */
function prefixSums(texts) {
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

return {
  LABELS, HISTORY_LIMIT, configure,
  isSpace, isEdgePunct, trimRange, trimSelection, mkSpan, overlap, sortSpans, normaliseSpans, addSpan, deleteSpan, relabelSpan, setNote,
  acceptSuggestions, spansKey, spanId, plainSpans, validSpanList,
  tokenSelectionSpan, charSelectionSpan, prefixSums,
};
})();
if (typeof module !== "undefined" && module.exports) module.exports = Spans;
