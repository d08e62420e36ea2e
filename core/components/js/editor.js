// editor.js — the span editor's state and how it is drawn.
//
// One EditorState per shown document (edit mode). The span list itself only changes in
// commands.js (commit); here are the per-token drawing arrays, the focus, the selection
// and the queries on them. Drawing is incremental: a change marks the tokens whose
// classes may differ ("dirty") and flush() repaints just those, so a key press costs
// work proportional to the tokens it touches, not to the answer's length.

/**
 * The editor's state for one document.
 * @typedef {Object} EditorState
 *
 * The answer (fixed for the document):
 * @property {Object} st                 the component instance (index.js)
 * @property {number} n                  tokens
 * @property {string[]} texts
 * @property {number[]} starts           per-token code-point offsets
 * @property {number[]} ends
 * @property {string[]} chars            the answer as code points
 * @property {number[]} u16Before        prefix sums per token (n + 1), UTF-16 units
 * @property {number[]} cpBefore         prefix sums per token (n + 1), code points
 * @property {number[]} maxEnd           running maximum of `ends` (binary searches)
 * @property {boolean} monotone          starts non-decreasing (else searches are linear)
 *
 * Drawing, per token:
 * @property {string[]} base             base classes (View.baseClass)
 * @property {Int8Array} lab             drawn label rank (index in LABELS), -1 none
 * @property {Int8Array} thr             their label rank (conflict, "show theirs")
 * @property {Int16Array} sugN           visible suggestions covering the token
 * @property {Uint8Array} flags          F_SEL | F_SPAN | F_SUG
 * @property {Uint8Array} dirty          needs a repaint; the indexes are in dirtyList
 * @property {number[]} dirtyList
 * @property {number} scrollTo           token to scroll into view at the next redraw, or -1
 * @property {HTMLElement[]} outlines    the focus outline's boxes (outline.js)
 * @property {string} outlineKey         what they were drawn for
 *
 * Spans and history:
 * @property {Span[]} cur                the spans shown (sorted, normalised)
 * @property {Span[][]} undo
 * @property {Span[][]} redo
 * @property {{base: number, spans: Span[], key: string}} props   what the app last sent
 * @property {number} baseVersion        version a save is made on
 *
 * Focus and selection:
 * @property {?({kind: "span", id: string}|{kind: "sug", k: number})} focus
 * @property {?{r: number[], flag: number}} focusFlag   tokens carrying the focus flag
 * @property {?({kind: "tok", a: number, b: number}|{kind: "char", start: number, end: number})} sel
 * @property {?number} anchor            token a shift+click extends from
 * @property {?{a: number, b: number, moved: boolean}} drag     token drag in progress
 * @property {?{i: number}} nativeDrag   character (Alt) drag in progress
 * @property {boolean} precise           the "exact chars" toggle
 * @property {?string} noteFor           spanId whose note is being edited
 *
 * Suggestions:
 * @property {Suggestion[]} sugs
 * @property {Uint8Array} sugVisible     shown: not rejected, overlapping no span
 * @property {Set<number>} rejected
 * @property {string} sugKey             JSON of the suggestions last received
 * @property {number} bulkMin            the bulk-accept score
 *
 * Talking to the app (sync.js, drafts.js, commands.js):
 * @property {string} docId
 * @property {string} draftKey
 * @property {{data: ?Conflict, key: string, resolved: ?string, theirs: Span[], show: boolean}} conf
 * @property {{timer: number, held: boolean, lastSent: string, restored: ?Object}} draft
 * @property {{pending: ?{key: string, base: number}, busy: boolean, timer: number, count: number}} save
 * @property {{text: string, kind: string}} message   the status line's message
 * @property {?Object} ui                the toolbar's elements (toolbar.js)
 */

// eslint-disable-next-line no-unused-vars
const Editor = (() => {
"use strict";

const { GOLD } = Colour;
const { LABELS, spanId, spansKey, tokenSelectionSpan, prefixSums, validSpanList } = Spans;
const { visibleWhitespace } = View;

// Flags per token (bit set): part of the selection / the focused span / the focused suggestion.
const F_SEL = 1;
const F_SPAN = 2;
const F_SUG = 4;

/** @returns {EditorState} */
function create(st, d) {
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
  const base = new Array(n);
  for (let i = 0; i < n; i++) base[i] = View.baseClass(d, i);
  const spans = validSpanList(e.spans, chars.length) || [];
  const key = spansKey(spans);
  /** @type {EditorState} */
  const ed = {
    st, n, texts: d.texts, starts, ends, chars, u16Before, cpBefore, maxEnd, monotone,
    base,
    lab: new Int8Array(n).fill(-1),
    thr: new Int8Array(n).fill(-1),
    sugN: new Int16Array(n),
    flags: new Uint8Array(n),
    dirty: new Uint8Array(n),
    dirtyList: [],
    scrollTo: -1,
    outlines: [], outlineKey: "",
    cur: spans, undo: [], redo: [],
    props: { base: e.base_version, spans, key },
    baseVersion: e.base_version,
    focus: null, focusFlag: null, sel: null, anchor: null,
    drag: null, nativeDrag: null, precise: false, noteFor: null,
    sugs: e.suggestions, sugVisible: new Uint8Array(e.suggestions.length), rejected: new Set(),
    sugKey: JSON.stringify(e.suggestions), bulkMin: 0.8,
    docId: d.doc_id, draftKey: e.draft_key,
    conf: { data: null, key: "", resolved: null, theirs: [], show: false },
    draft: { timer: 0, held: false, lastSent: key + "@" + e.base_version, restored: null },
    save: { pending: null, busy: false, timer: 0, count: 0 },
    message: { text: "", kind: "info" },
    ui: null,
  };
  st.ed = ed;
  relabelTokens(ed, 0, Infinity, ed.cur, ed.lab);
  updateSuggestions(ed);
  for (let i = 0; i < n; i++) markDirty(ed, i);
  return ed;
}

/** New scores for the same document: restyle the tokens whose score changed. */
function rescore(ed, prev, d) {
  for (let i = 0; i < d.n; i++) {
    if (prev.scores[i] !== d.scores[i]) {
      ed.base[i] = View.baseClass(d, i);
      ed.st.spans[i].style.backgroundColor = Colour.scoreColor(d.scores[i]);
      markDirty(ed, i);
    }
  }
}

// --- tokens by position ------------------------------------------------------------------

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

// --- drawing -------------------------------------------------------------------------------

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

/** Recompute the label rank in `arr` (ed.lab or ed.thr) of the tokens that may overlap [a, b). */
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

/** Redraw the tokens of every span that differs between `old` and `nw` (added, removed or
 * changed), and nothing else: a key press touches a handful of tokens even in a long answer. */
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

function paintToken(ed, i) {
  const el = ed.st.spans[i];
  let cls = ed.base[i];
  const r = ed.lab[i];
  if (r >= 0) cls += " " + GOLD[LABELS[r]].cls;
  if (ed.conf.show && ed.thr[i] >= 0) cls += " t-" + GOLD[LABELS[ed.thr[i]]].key;
  if (ed.sugN[i] > 0) cls += " sug";
  const f = ed.flags[i];
  if (f & F_SUG) cls += " fsug";
  if (f & F_SPAN) cls += " fspan";
  if (f & F_SEL) cls += " sel";
  if (el.className !== cls) el.className = cls;
}

/** Repaint the dirty tokens; returns how many. */
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

function markAllDirty(ed) {
  for (let i = 0; i < ed.n; i++) markDirty(ed, i);
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

/** Show the suggestions that are not rejected and overlap no span; hide the others. */
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

/** Replace the suggestions (new ones from the app), keeping rejections of the same ranges. */
function replaceSuggestions(ed, sugs, sugKey) {
  const rejected = rejectedRanges(ed);
  for (let k = 0; k < ed.sugs.length; k++) {
    if (!ed.sugVisible[k]) continue;
    const r = tokensOf(ed, ed.sugs[k].start, ed.sugs[k].end);
    if (r) for (let i = r[0]; i <= r[1]; i++) {
      ed.sugN[i] -= 1;
      markDirty(ed, i);
    }
  }
  if (ed.focus && ed.focus.kind === "sug") focusTo(ed, null);
  ed.sugs = sugs;
  ed.sugKey = sugKey;
  ed.sugVisible = new Uint8Array(ed.sugs.length);
  ed.rejected = new Set();
  rejectRanges(ed, rejected);
}

/** [start, end] of each rejected suggestion (what a draft keeps). */
function rejectedRanges(ed) {
  return [...ed.rejected].map((k) => [ed.sugs[k].start, ed.sugs[k].end]);
}

/** Reject the suggestions with these [start, end] ranges (from a draft), then redraw. */
function rejectRanges(ed, pairs) {
  if (!Array.isArray(pairs)) return;
  const want = new Set(pairs.filter(Array.isArray).map((p) => `${p[0]}:${p[1]}`));
  ed.sugs.forEach((sg, k) => {
    if (want.has(`${sg.start}:${sg.end}`)) ed.rejected.add(k);
  });
  updateSuggestions(ed);
}

function visibleSuggestionIndexes(ed) {
  const out = [];
  for (let k = 0; k < ed.sugs.length; k++) if (ed.sugVisible[k]) out.push(k);
  return out;
}

// --- focus and selection -----------------------------------------------------------------

/** Index in ed.cur of the focused span, or -1. */
function focusIndex(ed) {
  if (!ed.focus || ed.focus.kind !== "span") return -1;
  const id = ed.focus.id;
  for (let k = 0; k < ed.cur.length; k++) if (spanId(ed.cur[k]) === id) return k;
  return -1;
}

function sugFocused(ed) {
  return !!(ed.focus && ed.focus.kind === "sug");
}

/** The one place the focus changes: clears the old focus flags, sets the new ones. A focus
 * on a span that no longer exists (or a hidden suggestion) becomes no focus. */
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

/** The selection as a span range (code points), or {error}. */
function selectionSpan(ed) {
  const sel = ed.sel;
  if (!sel) return { error: "select a span first: drag over the text (Alt: exact characters)" };
  if (sel.kind === "char") return { start: sel.start, end: sel.end };
  return tokenSelectionSpan(ed.starts, ed.ends, ed.chars, sel.a, sel.b);
}

/** The DOM Selection (of the shadow root where the browser has one). */
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

// --- what is under a token ---------------------------------------------------------------

/** The span drawn on token i (the most severe if several), or null. */
function tokenSpanAt(ed, i) {
  let best = null;
  for (const s of ed.cur) {
    if (s.start >= ed.ends[i]) break;
    if (tokenOverlaps(ed, i, s.start, s.end) && (!best || LABELS.indexOf(s.label) < LABELS.indexOf(best.label))) best = s;
  }
  return best;
}

/** The shown suggestion on token i with the highest score, or -1. */
function suggestionAt(ed, i) {
  let best = -1;
  for (let k = 0; k < ed.sugs.length; k++) {
    if (!ed.sugVisible[k]) continue;
    const sg = ed.sugs[k];
    if (tokenOverlaps(ed, i, sg.start, sg.end) && (best < 0 || sg.score > ed.sugs[best].score)) best = k;
  }
  return best;
}

/** The answer's text [a, b) for the status line (whitespace visible, cut at `max`). */
function excerpt(ed, a, b, max = 60) {
  const text = ed.chars.slice(a, Math.min(b, a + max)).join("");
  return visibleWhitespace(text).replace(/␣/g, " ") + (b - a > max ? "…" : "");
}

/** The editor's rows of token i's tooltip. */
function tipRows(ed, i, add) {
  const s = tokenSpanAt(ed, i);
  add("label", s ? `${s.label} (${GOLD[s.label].word})` : "—");
  if (s && s.note) add("note", s.note);
  for (let k = 0; k < ed.sugs.length; k++) {
    const sg = ed.sugs[k];
    if (!tokenOverlaps(ed, i, sg.start, sg.end)) continue;
    const state = ed.rejected.has(k) ? " (rejected)" : ed.sugVisible[k] ? "" : " (hidden: overlaps a span)";
    const who = sg.source ? `${sg.source}: ${sg.label || ""} ` : "";
    add("suggestion", `${who}score ${sg.score.toFixed(3)}${state}`);
    if (sg.note) add("judge's note", sg.note);
  }
  if (ed.conf.data && ed.thr[i] >= 0) add("theirs", LABELS[ed.thr[i]]);
}

return {
  create, rescore, tokensOf, relabelTokens, redrawChanged, markDirty, markAllDirty, flush,
  updateSuggestions, replaceSuggestions, rejectedRanges, rejectRanges, visibleSuggestionIndexes,
  focusIndex, sugFocused, focusTo, focusOnSpan, setSelection, selectionSpan, nativeSelection, clearNativeSelection,
  tokenSpanAt, suggestionAt, excerpt, tipRows,
};
})();
