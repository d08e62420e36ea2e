// actions.js — every editor action, declared once: its keys, its button, its legend.
//
// This table drives the key handling (keys.js), the toolbar, banner and note buttons and
// their enabled / shown / pressed states (toolbar.js), and the key legend, which is the
// toolbar itself: each key is shown once, on its button (`kbd`), and each button explains
// itself in its tooltip (`title`); the mouse gestures (GESTURES) are in the status line's
// hint. There is no second legend. To add an action, add a row here. Actions with keys and
// no button (the caret's arrows) have their keys on the button that explains them.
//
// Key specs: "Mod+" = Ctrl or ⌘ held (without it neither may be, nor Alt, ever);
// "Shift+" = Shift held, "NoShift+" = not held, neither = either way. A letter matches in
// either case (Caps Lock), and with Mod also by its physical key (other layouts); a digit
// also by its physical key (top row or keypad). Names are KeyboardEvent.key values.

/**
 * @typedef {Object} Action
 * @property {string} id                 its button's data-action
 * @property {string} [bar]              where its button goes: "edit" | "suggest" | "save" (the toolbar),
 *                                       "note" | "conflict" | "draft" (their rows); none: no button
 * @property {boolean} [sep]             a separator before its button
 * @property {string[]} [keys]           key specs (above)
 * @property {string} [scope]            where its keys work: "editor" (default; the editor has the
 *                                       keyboard focus), "note" / "bulk" (typing in that input)
 * @property {?string} [kbd]             the key shown on its button
 * @property {string|function(EditorState): string} [text]    its button's text
 * @property {string|function(EditorState): string} title     legend: what it does, with its keys
 * @property {function(EditorState): void} run
 * @property {function(EditorState): boolean} [enabled]   button disabled when false
 * @property {boolean} [passIfDisabled]  when not enabled, its keys are not taken (Tab moves on)
 * @property {function(EditorState): boolean} [shown]     button hidden when false
 * @property {function(EditorState): boolean} [pressed]   a toggle (aria-pressed)
 * @property {boolean} [noRepeat]        a held key does not repeat it
 * @property {string} [label]            label actions: the label (their buttons show its sample)
 * @property {boolean} [primary]
 */

// eslint-disable-next-line no-unused-vars
const Actions = (() => {
"use strict";

const { LABELS } = Spans;
const { GOLD } = Colour;
const C = Commands;
const E = Editor;

// Keys 1 / 2 / 3 / 0 label the labels in severity order (LABELS, from the payload's style:
// hallucinated, unverifiable, supported, ignore); the buttons come in that order. The
// label of each is read when the toolbar is built, after the payload configured LABELS.
const LABEL_KEYS = ["1", "2", "3", "0"];

const hasFocusedSpan = (ed) => E.focusIndex(ed) >= 0;
const hasSuggestions = (ed) => E.visibleSuggestionIndexes(ed).length > 0;

/** @type {Action[]} */
const ACTIONS = [
  ...LABEL_KEYS.map((key, rank) => ({
    id: `label-${key}`, bar: "edit", keys: [`NoShift+${key}`], kbd: key,
    get label() { return LABELS[rank]; },
    get text() { return GOLD[LABELS[rank]].word; },
    get title() { return `label it ${GOLD[LABELS[rank]].word} (key ${key}) · in files: ${LABELS[rank]}`; },
    run: (ed) => C.label(ed, LABELS[rank]),
  })),
  { id: "delete", bar: "edit", sep: true, keys: ["Backspace", "Delete"], kbd: "⌫", text: "delete",
    title: "delete the focused span (Backspace / Delete)", run: C.remove,
    enabled: (ed) => hasFocusedSpan(ed) || E.sugFocused(ed) },
  { id: "note", bar: "edit", keys: ["N"], kbd: "N", text: "note",
    title: "add or edit a note on the focused span (N)", run: C.openNote, enabled: hasFocusedSpan },
  { id: "undo", bar: "edit", sep: true, keys: ["Mod+NoShift+Z"], kbd: "Ctrl+Z", text: "undo",
    title: "undo (Ctrl+Z)", run: C.undo, enabled: (ed) => ed.undo.length > 0 },
  { id: "redo", bar: "edit", keys: ["Mod+Shift+Z", "Mod+Y"], kbd: "Ctrl+⇧Z", text: "redo",
    title: "redo (Ctrl+Shift+Z or Ctrl+Y)", run: C.redo, enabled: (ed) => ed.redo.length > 0 },
  { id: "prev-span", bar: "edit", sep: true, keys: ["K"], kbd: "K", text: "prev span",
    title: "focus the previous span (K)", run: (ed) => C.stepSpan(ed, -1), enabled: (ed) => ed.cur.length > 0 },
  { id: "next-span", bar: "edit", keys: ["J"], kbd: "J", text: "next span",
    title: "focus the next span (J)", run: (ed) => C.stepSpan(ed, 1), enabled: (ed) => ed.cur.length > 0 },
  { id: "clear", bar: "edit", keys: ["Escape"], kbd: "Esc", text: "clear",
    title: "clear the selection / focus, hide the caret, close the note (Esc)", run: C.escape },

  { id: "prev-sug", bar: "suggest", keys: ["Shift+Tab"], kbd: "⇧Tab", text: "prev",
    title: "focus the previous probe suggestion (Shift+Tab)", run: (ed) => C.stepSuggestion(ed, -1),
    enabled: hasSuggestions, passIfDisabled: true },
  { id: "next-sug", bar: "suggest", keys: ["NoShift+Tab"], kbd: "Tab", text: "next",
    title: "focus the next probe suggestion (Tab)", run: (ed) => C.stepSuggestion(ed, 1),
    enabled: hasSuggestions, passIfDisabled: true },
  { id: "accept", bar: "suggest", keys: ["A"], kbd: "A", text: "accept",
    get title() { return `accept the focused suggestion as ${GOLD[LABELS[0]].word} (A)`; }, run: C.accept, enabled: E.sugFocused },
  { id: "reject", bar: "suggest", keys: ["R"], kbd: "R", text: "reject",
    title: "reject (hide) the focused suggestion (R)", run: C.reject, enabled: E.sugFocused },
  { id: "bulk", bar: "suggest", scope: "bulk", keys: ["Enter"], text: "accept all ≥",
    title: "accept every shown suggestion with at least this score (skips any overlapping a span)",
    run: (ed) => C.bulk(ed, Number(ed.ui.bulkInput.value)), enabled: hasSuggestions },
  { id: "restore-rejected", bar: "suggest", text: (ed) => `show ${ed.rejected.size} rejected`,
    title: "show the rejected suggestions again", run: C.restoreRejected, shown: (ed) => ed.rejected.size > 0 },
  // The keyboard caret (caret.js): its button carries the legend of its keys (those below).
  { id: "caret", bar: "suggest", sep: true, kbd: "← →", text: "caret",
    title: "move a caret by token: ← / →, Home / End to the first / last token; Shift+← / Shift+→ select "
      + "the caret's token, then grow or shrink the selection by a token (Shift+Home / Shift+End: to the "
      + "first / last token); then label it (1 2 3 0). Click: show or hide the caret",
    run: Caret.toggle, pressed: (ed) => ed.caretOn },
  { id: "caret-left", keys: ["NoShift+ArrowLeft"], title: "the caret to the previous token (←)", run: (ed) => Caret.move(ed, -1) },
  { id: "caret-right", keys: ["NoShift+ArrowRight"], title: "the caret to the next token (→)", run: (ed) => Caret.move(ed, 1) },
  { id: "caret-home", keys: ["NoShift+Home"], title: "the caret to the first token (Home)", run: (ed) => Caret.jump(ed, -1) },
  { id: "caret-end", keys: ["NoShift+End"], title: "the caret to the last token (End)", run: (ed) => Caret.jump(ed, 1) },
  { id: "extend-left", keys: ["Shift+ArrowLeft"], title: "select / extend to the previous token (Shift+←)",
    run: (ed) => Caret.extend(ed, -1) },
  { id: "extend-right", keys: ["Shift+ArrowRight"], title: "select / extend to the next token (Shift+→)",
    run: (ed) => Caret.extend(ed, 1) },
  { id: "extend-home", keys: ["Shift+Home"], title: "select to the first token (Shift+Home)", run: (ed) => Caret.extendToEnd(ed, -1) },
  { id: "extend-end", keys: ["Shift+End"], title: "select to the last token (Shift+End)", run: (ed) => Caret.extendToEnd(ed, 1) },

  { id: "precise", bar: "suggest", kbd: "Alt", text: "exact chars",
    title: "select exact characters instead of whole tokens (or hold Alt while dragging)",
    run: (ed) => { ed.precise = !ed.precise; }, pressed: (ed) => ed.precise },

  { id: "save", bar: "save", keys: ["Mod+S"], kbd: "Ctrl+S", text: "Save", title: "save (Ctrl+S)",
    run: (ed) => C.save(ed, false), noRepeat: true },
  { id: "save-next", bar: "save", keys: ["NoShift+Enter"], kbd: "Enter", text: "Save & next", primary: true,
    title: "save and go to the next answer (Enter)", run: (ed) => C.save(ed, true), noRepeat: true },

  { id: "note-save", bar: "note", scope: "note", keys: ["Enter"], kbd: "Enter", text: "save note",
    title: "save the note", run: (ed) => C.commitNote(ed, ed.ui.noteInput.value) },
  { id: "note-cancel", bar: "note", scope: "note", keys: ["Escape"], kbd: "Esc", text: "cancel",
    title: "close without saving", run: C.closeNote },

  { id: "conflict-theirs", bar: "conflict", text: (ed) => (ed.conf.show ? "hide theirs" : "show theirs"),
    title: "show their spans as a bar under the text (yours stay underlined)",
    run: (ed) => Sync.resolveConflict(ed, "theirs"), pressed: (ed) => ed.conf.show },
  { id: "conflict-take", bar: "conflict", text: "take theirs", title: "replace your spans with theirs (undoable)",
    run: (ed) => Sync.resolveConflict(ed, "take") },
  { id: "conflict-mine", bar: "conflict", text: "keep mine", title: "save yours over theirs with the next save",
    run: (ed) => Sync.resolveConflict(ed, "mine") },

  { id: "draft-restore", bar: "draft", text: "restore it", title: "put the draft's spans in the editor (undoable)",
    run: (ed) => Sync.resolveDraft(ed, "restore") },
  { id: "draft-discard", bar: "draft",
    text: (ed) => (ed.draft.restored && ed.draft.restored.kind === "other" ? "discard it" : "discard draft"),
    title: (ed) => (ed.draft.restored && ed.draft.restored.kind === "other" ? "delete the draft" : "go back to the saved spans"),
    run: (ed) => Sync.resolveDraft(ed, "discard") },
];

// Mouse gestures (no button, no key): the status line's hint when nothing is selected.
const GESTURES = [["drag over the text", "select whole tokens"], ["⇧ click", "extend"]];

const BY_ID = new Map(ACTIONS.map((a) => [a.id, a]));

function parseKey(spec) {
  const parts = spec.split("+");
  const key = parts.pop();
  return {
    key: key.length === 1 ? key.toLowerCase() : key,
    mod: parts.includes("Mod"),
    shift: parts.includes("Shift") ? true : parts.includes("NoShift") ? false : null,
  };
}

const BOUND = ACTIONS.flatMap((a) => (a.keys || []).map((spec) => ({ action: a, scope: a.scope || "editor", k: parseKey(spec) })));

function keyMatches(k, e) {
  if ((e.ctrlKey || e.metaKey) !== k.mod || e.altKey) return false;
  if (k.shift !== null && e.shiftKey !== k.shift) return false;
  const key = typeof e.key === "string" && e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (key === k.key) return true;
  const code = e.code || "";
  if (/^[a-z]$/.test(k.key)) return k.mod && code === "Key" + k.key.toUpperCase();
  if (/^[0-9]$/.test(k.key)) return !e.shiftKey && (code === "Digit" + k.key || code === "Numpad" + k.key);
  return false;
}

/** The action a key event means in `scope`, or null. */
function forKey(e, scope) {
  for (const b of BOUND) if (b.scope === scope && keyMatches(b.k, e)) return b.action;
  return null;
}

function byId(id) {
  return BY_ID.get(id) || null;
}

function enabled(a, ed) {
  return !a.enabled || a.enabled(ed);
}

return { LABEL_KEYS, ACTIONS, GESTURES, forKey, byId, enabled };
})();
