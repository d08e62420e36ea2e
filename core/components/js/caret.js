// caret.js — working through the text from the keyboard alone: a caret on one token
// (← / →, Home / End) and a selection grown from it token by token (Shift+arrows). The
// selection is the mouse's kind ({kind: "tok", a, b}), so the label keys apply to it through
// the same code (Commands.label, Spans.tokenSelectionSpan: the same trimming of spaces and
// end punctuation). The caret is drawn by outline.js (a box around the token's characters,
// and the root's aria-activedescendant); the mouse moves it without showing it (mouse.js).

// eslint-disable-next-line no-unused-vars
const Caret = (() => {
"use strict";

const { isSpace } = Spans;
const { say } = Commands;
const E = Editor;

/** Tokens the caret stops on: those with a visible character (no empty piece, no bare space). */
function isStop(ed, i) {
  for (const ch of ed.texts[i]) if (!isSpace(ch)) return true;
  return false;
}

// The next stop after token `from` in direction `dir` (1 or -1), or -1 if there is none.
function stepFrom(ed, from, dir) {
  for (let i = from + dir; i >= 0 && i < ed.n; i += dir) if (isStop(ed, i)) return i;
  return -1;
}

const firstStop = (ed) => stepFrom(ed, -1, 1);
const lastStop = (ed) => stepFrom(ed, ed.n, -1);

/** The caret's token: where it is (shown or not: a click puts it there), else the first stop. */
function current(ed) {
  return ed.caret >= 0 && ed.caret < ed.n ? ed.caret : firstStop(ed);
}

function place(ed, i) {
  ed.caret = i;
  ed.caretOn = true;
  ed.scrollTo = i;
}

// No stop at all (an answer of spaces): say so, move nothing.
function noText(ed) {
  if (firstStop(ed) >= 0) return false;
  say(ed, "there is no text to move through", "error");
  return true;
}

function atEnd(ed, dir) {
  say(ed, dir > 0 ? "the caret is on the last token" : "the caret is on the first token");
}

/** ← / → (dir -1 / 1): the selection and the focus go, the caret moves one token (never past
 * the first or last). With no caret yet, it appears on the first token. */
function move(ed, dir) {
  if (noText(ed)) return;
  let i = current(ed);
  if (ed.caret >= 0) {
    const j = stepFrom(ed, i, dir);
    if (j < 0) atEnd(ed, dir);
    else i = j;
  }
  E.setSelection(ed, null);
  ed.anchor = null;
  E.focusTo(ed, null);
  place(ed, i);
}

/** Home / End (dir -1 / 1): the caret to the first / last token. */
function jump(ed, dir) {
  if (noText(ed)) return;
  E.setSelection(ed, null);
  ed.anchor = null;
  E.focusTo(ed, null);
  place(ed, dir > 0 ? lastStop(ed) : firstStop(ed));
}

// Select tokens anchor..to (the moving end, where the caret goes).
function selectTo(ed, anchor, to) {
  E.focusTo(ed, null);
  E.setSelection(ed, { kind: "tok", a: anchor, b: to });
  ed.anchor = anchor;
  place(ed, to);
}

/** Shift+← / Shift+→: without a token selection, select the caret's token; with one, move its
 * moving end one token (growing or shrinking it, as a shift+click would). */
function extend(ed, dir) {
  if (noText(ed)) return;
  const sel = ed.sel && ed.sel.kind === "tok" ? ed.sel : null;
  if (!sel) {
    const i = current(ed);
    selectTo(ed, i, i);
    return;
  }
  const j = stepFrom(ed, sel.b, dir);
  if (j < 0) atEnd(ed, dir);
  selectTo(ed, sel.a, j < 0 ? sel.b : j);
}

/** Shift+Home / Shift+End: select from the caret (or the selection's anchor) to the first / last token. */
function extendToEnd(ed, dir) {
  if (noText(ed)) return;
  const anchor = ed.sel && ed.sel.kind === "tok" ? ed.sel.a : current(ed);
  selectTo(ed, anchor, dir > 0 ? lastStop(ed) : firstStop(ed));
}

/** The toolbar's caret button: show the caret (where it was, else on the first token) or hide it. */
function toggle(ed) {
  if (ed.caretOn) ed.caretOn = false;
  else if (!noText(ed)) place(ed, current(ed));
}

/** Where a mouse action left the selection's moving end (or the token clicked): the caret
 * goes there, shown only if it already was. */
function follow(ed, i) {
  if (i >= 0 && i < ed.n) ed.caret = i;
}

return { isStop, move, jump, extend, extendToEnd, toggle, follow };
})();
