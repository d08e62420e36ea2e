// mouse.js — selecting with the mouse. A drag or shift+click selects whole tokens (the
// editor draws the selection, no native one); with Alt held or the "exact chars" toggle
// the browser selects characters and the DOM Selection is read on mouseup, converted from
// UTF-16 units to code points (Spans.charSelectionSpan). A click on a span focuses it; a
// second click selects the token under it. The keyboard caret (caret.js) follows the mouse.

// eslint-disable-next-line no-unused-vars
const Mouse = (() => {
"use strict";

const { spanId, charSelectionSpan } = Spans;
const E = Editor;

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
  // a chunk or the box: the boundary is before child `offset`, i.e. after child `offset - 1`
  // (a chunk may end with the focus outline's boxes, which hold no token)
  const edgeToken = (el, last) => {
    if (tokenOf(el) >= 0) return tokenOf(el);
    const kids = el.children || [];
    for (let k = 0; k < kids.length; k++) {
      const i = tokenOf(kids[last ? kids.length - 1 - k : k]);
      if (i >= 0) return i;
    }
    return -1;
  };
  const kids = node.childNodes;
  for (let k = offset; k < kids.length; k++) {
    const i = edgeToken(kids[k], false);
    if (i >= 0) return { i, off: 0 };
  }
  for (let k = Math.min(offset, kids.length) - 1; k >= 0; k--) {
    const i = edgeToken(kids[k], true);
    if (i >= 0) return { i, off: ed.texts[i].length };
  }
  return null;
}

// The character selection (code points) of the current DOM Selection, or null.
function readCharSelection(ed) {
  const sel = E.nativeSelection(ed);
  if (!sel || !sel.rangeCount || sel.isCollapsed) return null;
  const range = sel.getRangeAt(0);
  const a = domBoundary(ed, range.startContainer, range.startOffset);
  const b = domBoundary(ed, range.endContainer, range.endOffset);
  if (!a || !b) return null;
  const r = charSelectionSpan(ed.texts, ed.u16Before, ed.cpBefore, ed.u16Before[a.i] + a.off, ed.u16Before[b.i] + b.off);
  return r.error ? null : r;
}

function tokenIndex(st, target) {
  return st.isToken(target) ? Number(target.dataset.i) : -1;
}

function clickToken(ed, i) {
  Caret.follow(ed, i);
  const s = E.tokenSpanAt(ed, i);
  const onFocused = s && ed.focus && ed.focus.kind === "span" && ed.focus.id === spanId(s);
  if (s && !onFocused) {
    // first click on a span focuses it (to relabel, delete, note); a second selects the token
    E.setSelection(ed, null);
    E.focusTo(ed, E.focusOnSpan(s));
    return;
  }
  E.setSelection(ed, { kind: "tok", a: i, b: i });
  const k = E.suggestionAt(ed, i);
  E.focusTo(ed, k >= 0 ? { kind: "sug", k } : null);
}

function onDown(st, e) {
  const ed = st.ed;
  if (!ed || e.button !== 0) return;
  if (ed.noteFor != null) Commands.commitNote(ed, ed.ui.noteInput.value); // clicking away keeps what was typed
  const i = tokenIndex(st, e.target);
  if (e.altKey || ed.precise) {
    // character precision: the browser makes the selection; read on mouseup
    ed.nativeDrag = { i };
    Tooltip.hide(st);
    return;
  }
  e.preventDefault(); // no native selection; keep the keyboard focus here
  st.root.focus({ preventScroll: true });
  if (i < 0) return;
  Commands.say(ed, "");
  if (e.shiftKey) {
    const fr = ed.focusFlag ? ed.focusFlag.r[0] : null;
    const a = ed.anchor != null ? ed.anchor : fr != null ? fr : i;
    ed.anchor = a;
    E.focusTo(ed, null);
    E.setSelection(ed, { kind: "tok", a, b: i });
    Caret.follow(ed, i);
    Toolbar.redraw(ed, "shift-click", e.timeStamp);
    return;
  }
  ed.drag = { a: i, b: i, moved: false };
  Tooltip.hide(st);
}

function onMove(st, e) {
  const ed = st.ed;
  if (!ed || !ed.drag) return;
  const i = tokenIndex(st, e.target);
  if (i < 0 || i === ed.drag.b) return;
  ed.drag.b = i;
  ed.drag.moved = true;
  if (ed.focus) E.focusTo(ed, null);
  E.setSelection(ed, { kind: "tok", a: ed.drag.a, b: i });
  E.flush(ed);
  Outline.draw(ed);
}

function onUp(st, e) {
  const ed = st.ed;
  if (!ed) return;
  if (ed.drag) {
    const { a, b, moved } = ed.drag;
    ed.drag = null;
    ed.anchor = a;
    if (!moved) clickToken(ed, a);
    else {
      E.setSelection(ed, { kind: "tok", a, b });
      Caret.follow(ed, b);
    }
    Toolbar.redraw(ed, moved ? "drag" : "click", e.timeStamp);
  } else if (ed.nativeDrag) {
    const nd = ed.nativeDrag;
    ed.nativeDrag = null;
    const t = e.timeStamp;
    setTimeout(() => { // the selection is final once this mouseup has been handled
      if (st.ed !== ed) return;
      const r = readCharSelection(ed);
      if (r) {
        E.focusTo(ed, null);
        E.setSelection(ed, { kind: "char", start: r.start, end: r.end });
        ed.anchor = null;
      } else if (nd.i >= 0) {
        clickToken(ed, nd.i);
      }
      Toolbar.redraw(ed, "alt-select", t);
    }, 0);
  }
}

function attach(st) {
  if (!st.mouseHandlers) {
    st.mouseHandlers = {
      down: (e) => onDown(st, e),
      move: (e) => onMove(st, e),
      up: (e) => onUp(st, e),
    };
  }
  const hd = st.mouseHandlers;
  st.box.addEventListener("mousedown", hd.down);
  st.box.addEventListener("mousemove", hd.move);
  window.addEventListener("mouseup", hd.up);
}

function detach(st) {
  const hd = st.mouseHandlers;
  if (!hd) return;
  st.box.removeEventListener("mousedown", hd.down);
  st.box.removeEventListener("mousemove", hd.move);
  window.removeEventListener("mouseup", hd.up);
  if (st.ed) {
    st.ed.drag = null;
    st.ed.nativeDrag = null;
  }
}

return { attach, detach };
})();
