// outline.js — the focused span (or suggestion) drawn as ONE outline: a box around its
// text on each line it covers, instead of a box per token. The keyboard caret (caret.js) is
// drawn the same way, a box of its own around its token's characters.
//
// A box is an absolutely placed element inside the chunk (view.js) that holds its line, so
// it moves with the text when chunks above it are laid out late (content-visibility) and
// scrolls with it. The boxes are measured from the text itself (a DOM Range per token,
// clipped to the span), so a leading space glued to the first word is left out. They are
// measured again when the focus changes, when the text box changes width (lines re-wrap)
// and when the page's fonts have loaded.

// eslint-disable-next-line no-unused-vars
const Outline = (() => {
"use strict";

const { isSpace } = Spans;
const { h } = View;

const PAD_X = 2; // px beyond the text on each side (clamped to the chunk)
const PAD_Y = 1;

// UTF-16 offset of code point `cp` in `text` (clamped to its length).
function u16At(text, cp) {
  let units = 0;
  let k = 0;
  for (const ch of text) {
    if (k >= cp) break;
    units += ch.length;
    k += 1;
  }
  return units;
}

/** What the outline goes around: {kind, start, end, first, last}, code points and tokens; or null. */
function target(ed) {
  const f = ed.focus;
  if (!f || !ed.focusFlag) return null;
  const [first, last] = ed.focusFlag.r;
  if (f.kind === "span") {
    const k = Editor.focusIndex(ed);
    return k < 0 ? null : { kind: "span", start: ed.cur[k].start, end: ed.cur[k].end, first, last };
  }
  const sg = ed.sugs[f.k];
  return sg ? { kind: "sug", start: sg.start, end: sg.end, first, last } : null;
}

// The part of token i inside [start, end), as UTF-16 offsets [a, b) in its text, or null if
// that part is empty or only whitespace.
function tokenPart(ed, i, start, end) {
  const text = ed.texts[i];
  const cps = Array.from(text);
  // offsets that match the text: clip to the span; otherwise the whole token
  const exact = ed.ends[i] - ed.starts[i] === cps.length;
  const a = exact ? Math.max(0, start - ed.starts[i]) : 0;
  const b = exact ? Math.min(cps.length, end - ed.starts[i]) : cps.length;
  if (a >= b || cps.slice(a, b).every(isSpace)) return null;
  return [u16At(text, a), u16At(text, b)];
}

/** The boxes of the target's text: one per line, each in the chunk of its line (viewport px). */
function lineBoxes(ed, t) {
  const range = document.createRange();
  const boxes = [];
  let cur = null;
  for (let i = t.first; i <= t.last; i++) {
    const el = ed.st.spans[i];
    const node = el && el.firstChild;
    if (!node || node.nodeType !== 3) continue;
    const part = tokenPart(ed, i, t.start, t.end);
    if (!part) continue;
    range.setStart(node, part[0]);
    range.setEnd(node, part[1]);
    for (const q of range.getClientRects()) {
      if (q.width < 0.5 || q.height < 0.5) continue;
      const sameLine = cur && cur.chunk === el.parentNode &&
        Math.min(cur.bottom, q.bottom) - Math.max(cur.top, q.top) > Math.min(cur.bottom - cur.top, q.height) / 2;
      if (sameLine) {
        cur.left = Math.min(cur.left, q.left);
        cur.right = Math.max(cur.right, q.right);
        cur.top = Math.min(cur.top, q.top);
        cur.bottom = Math.max(cur.bottom, q.bottom);
      } else {
        cur = { chunk: el.parentNode, left: q.left, right: q.right, top: q.top, bottom: q.bottom };
        boxes.push(cur);
      }
    }
  }
  return boxes;
}

function clear(ed) {
  for (const el of ed.outlines || []) el.remove();
  ed.outlines = [];
}

// Redraw when the text box changes width (lines re-wrap) and once the fonts have loaded.
function watch(ed) {
  const st = ed.st;
  if (!st.outlineWatch && typeof ResizeObserver === "function") {
    st.outlineWatch = { width: st.box.clientWidth, frame: 0 };
    const w = st.outlineWatch;
    new ResizeObserver(() => {
      const width = st.box.clientWidth;
      if (width === w.width || w.frame) return;
      w.width = width;
      // not inside the observer's callback: measuring there may deliver a loop error
      w.frame = requestAnimationFrame(() => {
        w.frame = 0;
        if (st.ed) draw(st.ed, true);
      });
    }).observe(st.box);
  }
  if (!st.fontWait && document.fonts && document.fonts.status !== "loaded") {
    st.fontWait = true;
    document.fonts.ready.then(() => {
      if (st.ed) draw(st.ed, true);
    });
  }
}

// Boxes of class `cls` around tokens first..last, clipped to [start, end) (code points), each
// placed in the chunk of its line; returns the elements.
function place(ed, t, cls) {
  const out = [];
  const bounds = new Map(); // chunk -> its rectangle
  for (const b of lineBoxes(ed, t)) {
    let c = bounds.get(b.chunk);
    if (!c) bounds.set(b.chunk, (c = b.chunk.getBoundingClientRect()));
    const left = Math.max(0, b.left - c.left - PAD_X);
    const right = Math.min(c.width, b.right - c.left + PAD_X);
    const top = Math.max(0, b.top - c.top - PAD_Y);
    const bottom = Math.min(c.height, b.bottom - c.top + PAD_Y);
    const el = h("div", cls);
    el.style.left = `${left}px`;
    el.style.top = `${top}px`;
    el.style.width = `${right - left}px`;
    el.style.height = `${bottom - top}px`;
    b.chunk.appendChild(el);
    out.push(el);
  }
  return out;
}

/** Draw the caret if it moved, was shown or hidden (or `force`): a box around its token's
 * characters (spaces left out), and the token named by the root's aria-activedescendant. */
function drawCaret(ed, force) {
  const i = ed.caretOn && ed.caret >= 0 && ed.caret < ed.n ? ed.caret : -1;
  const key = String(i);
  if (!force && key === ed.caretKey) return;
  ed.caretKey = key;
  for (const el of ed.caretBoxes) el.remove();
  ed.caretBoxes = [];
  const root = ed.st.root;
  if (ed.caretEl) ed.caretEl.removeAttribute("id");
  ed.caretEl = null;
  if (i < 0) {
    root.removeAttribute("aria-activedescendant");
    return;
  }
  const el = ed.st.spans[i];
  el.id = `ple-tok-${i}`; // ids are per shadow root: each editor has its own
  ed.caretEl = el;
  root.setAttribute("aria-activedescendant", el.id);
  watch(ed);
  let start = ed.starts[i];
  let end = ed.ends[i];
  while (start < end && isSpace(ed.chars[start])) start += 1;
  while (end > start && isSpace(ed.chars[end - 1])) end -= 1;
  ed.caretBoxes = place(ed, { start, end, first: i, last: i }, "ple-caret");
}

/** Draw the outline of the focus if it changed (or `force`), and the caret: after the tokens
 * are painted. */
function draw(ed, force) {
  drawCaret(ed, force);
  const t = target(ed);
  const key = t ? `${t.kind}:${t.start}:${t.end}` : "";
  if (!force && key === ed.outlineKey) return;
  ed.outlineKey = key;
  clear(ed);
  if (!t) return;
  watch(ed);
  ed.outlines = place(ed, t, "ple-outline" + (t.kind === "sug" ? " ple-outline-sug" : ""));
}

return { draw };
})();
