// commands.js — what the editor's actions do to its state (each action in actions.js
// calls one of these). Every change of the span list goes through commit(), which keeps
// the undo history, redraws the changed tokens and writes the draft.

// eslint-disable-next-line no-unused-vars
const Commands = (() => {
"use strict";

const { LABELS, HISTORY_LIMIT, mkSpan, addSpan, deleteSpan, relabelSpan, setNote, acceptSuggestions, spansKey, spanId,
  plainSpans } = Spans;
const E = Editor;

const SAVE_CONFIRM_MS = 5000;

/**
 * Make `spans` current. Options: history (default true), focus (a focus; undefined keeps
 * the current one), scroll, keepSel, silent (no draft report: the server's own spans).
 * @returns {boolean} whether the spans changed
 */
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
    E.redrawChanged(ed, old, spans);
    E.updateSuggestions(ed);
  }
  E.focusTo(ed, opts.focus !== undefined ? opts.focus : ed.focus, !!opts.scroll);
  if (!opts.keepSel) {
    E.setSelection(ed, null);
    ed.anchor = null;
  }
  if (changed) {
    Drafts.writeLocal(ed);
    if (!opts.silent) Drafts.schedule(ed);
  }
  return changed;
}

/** The status line's message ("" clears it; kind "error" shows it in red). */
function say(ed, text, kind) {
  ed.message = { text: text || "", kind: kind || "info" };
}

function containing(spans, start, end, label) {
  return spans.find((s) => s.label === label && s.start <= start && s.end >= end) || null;
}

// --- labels and deletion -----------------------------------------------------------------

/** Label the selection; else relabel the focused span; else accept the focused suggestion. */
function label(ed, lab) {
  if (ed.sel) {
    const r = E.selectionSpan(ed);
    if (r.error) {
      say(ed, r.error, "error");
      return;
    }
    const nw = addSpan(ed.cur, mkSpan(r.start, r.end, lab, null), ed.chars);
    commit(ed, nw, { focus: E.focusOnSpan(containing(nw, r.start, r.end, lab)) });
    E.clearNativeSelection(ed);
    return;
  }
  const idx = E.focusIndex(ed);
  if (idx >= 0) {
    const t = ed.cur[idx];
    if (t.label === lab) return;
    const nw = relabelSpan(ed.cur, idx, lab);
    commit(ed, nw, { focus: E.focusOnSpan(containing(nw, t.start, t.end, lab)) });
    return;
  }
  if (E.sugFocused(ed)) {
    acceptOne(ed, ed.focus.k, lab);
    return;
  }
  say(ed, "select a span first: drag over the text (hold Alt for exact characters)", "error");
}

/** Delete the focused span (or reject the focused suggestion). */
function remove(ed) {
  const idx = E.focusIndex(ed);
  if (idx >= 0) {
    commit(ed, deleteSpan(ed.cur, idx), { focus: null });
    return;
  }
  if (E.sugFocused(ed)) {
    reject(ed);
    return;
  }
  say(ed, "no span is focused (click a span, or J / K)", "error");
}

// --- undo / redo ---------------------------------------------------------------------------

function addedSpan(old, nw) {
  const ids = new Set(old.map(spanId));
  return nw.find((s) => !ids.has(spanId(s))) || null;
}

function undo(ed) {
  if (!ed.undo.length) {
    say(ed, "nothing to undo");
    return;
  }
  const prev = ed.undo.pop();
  ed.redo.push(ed.cur);
  const back = addedSpan(ed.cur, prev);
  commit(ed, prev, { history: false, focus: back ? E.focusOnSpan(back) : undefined });
}

function redo(ed) {
  if (!ed.redo.length) {
    say(ed, "nothing to redo");
    return;
  }
  const next = ed.redo.pop();
  ed.undo.push(ed.cur);
  const again = addedSpan(ed.cur, next);
  commit(ed, next, { history: false, focus: again ? E.focusOnSpan(again) : undefined });
}

// --- moving the focus ----------------------------------------------------------------------

/** Focus the next (dir 1) / previous (-1) span, from the focus, selection or suggestion. */
function stepSpan(ed, dir) {
  const n = ed.cur.length;
  if (!n) {
    say(ed, "no spans yet");
    return;
  }
  let idx = E.focusIndex(ed);
  if (idx < 0) {
    // from the selection (or the focused suggestion), else from the start / the end
    const r = ed.sel ? E.selectionSpan(ed) : E.sugFocused(ed) ? ed.sugs[ed.focus.k] : null;
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
  E.setSelection(ed, null);
  E.focusTo(ed, E.focusOnSpan(ed.cur[idx]), true);
}

/** Focus the next / previous shown suggestion (cycling). */
function stepSuggestion(ed, dir) {
  const vis = E.visibleSuggestionIndexes(ed);
  if (!vis.length) return false;
  let pos = E.sugFocused(ed) ? vis.indexOf(ed.focus.k) : -1;
  if (pos < 0) {
    // start next to the focused span / selection, else at the start / end
    const idx = E.focusIndex(ed);
    const pivot = idx >= 0 ? ed.cur[idx].start : ed.sel && !E.selectionSpan(ed).error ? E.selectionSpan(ed).start : null;
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
  E.setSelection(ed, null);
  E.focusTo(ed, { kind: "sug", k: vis[pos] }, true);
  return true;
}

/** Escape: close the note, else clear the selection, else the focus. */
function escape(ed) {
  if (ed.noteFor != null) closeNote(ed);
  else if (ed.sel) {
    E.setSelection(ed, null);
    E.clearNativeSelection(ed);
  } else E.focusTo(ed, null);
}

// --- suggestions ---------------------------------------------------------------------------

// After accepting / rejecting suggestion k: focus the next one shown (Tab-like), if any.
function focusNextSuggestionAfter(ed, k) {
  const from = ed.sugs[k];
  const vis = E.visibleSuggestionIndexes(ed);
  const next = vis.find((j) => ed.sugs[j].start >= from.end) ?? vis.find((j) => j !== k);
  if (next != null) E.focusTo(ed, { kind: "sug", k: next }, true);
  return next != null;
}

function acceptOne(ed, k, lab) {
  const sg = ed.sugs[k];
  if (!sg) return;
  const as = sg.label || lab || LABELS[0]; // a judge's suggestion carries its label and note
  const nw = addSpan(ed.cur, mkSpan(sg.start, sg.end, as, sg.note || null), ed.chars);
  commit(ed, nw, { focus: E.focusOnSpan(containing(nw, sg.start, sg.end, as)) });
  say(ed, `accepted suggestion (score ${sg.score.toFixed(2)}) as ${as}`);
  focusNextSuggestionAfter(ed, k);
}

/** Accept the focused suggestion as Not Supported. */
function accept(ed) {
  if (E.sugFocused(ed)) acceptOne(ed, ed.focus.k, LABELS[0]);
  else say(ed, "no suggestion is focused (Tab / Shift+Tab)", "error");
}

/** Reject (hide) the focused suggestion. */
function reject(ed) {
  if (!E.sugFocused(ed)) {
    say(ed, "no suggestion is focused (Tab / Shift+Tab)", "error");
    return;
  }
  const k = ed.focus.k;
  ed.rejected.add(k);
  E.updateSuggestions(ed); // hides it and drops the focus
  say(ed, `rejected suggestion (score ${ed.sugs[k].score.toFixed(2)})`);
  focusNextSuggestionAfter(ed, k);
  Drafts.writeLocal(ed);
}

function restoreRejected(ed) {
  const count = ed.rejected.size;
  ed.rejected.clear();
  E.updateSuggestions(ed);
  say(ed, `${count} rejected suggestion${count === 1 ? "" : "s"} shown again`);
  Drafts.writeLocal(ed);
}

/** Accept every shown suggestion scoring at least `v` (one undo step). */
function bulk(ed, v) {
  if (!(v >= 0 && v <= 1)) {
    say(ed, "the score for bulk accept must be a number from 0 to 1", "error");
    return;
  }
  ed.bulkMin = v;
  const shown = E.visibleSuggestionIndexes(ed);
  const list = shown.map((k) => ed.sugs[k]);
  const nw = acceptSuggestions(ed.cur, list, v, LABELS[0]);
  commit(ed, nw, { focus: null });
  const now = E.visibleSuggestionIndexes(ed);
  const taken = shown.length - now.length;
  say(ed, `accepted ${taken} suggestion${taken === 1 ? "" : "s"} with score ≥ ${v.toFixed(2)} as ${LABELS[0]}`);
}

// --- notes ---------------------------------------------------------------------------------

function openNote(ed) {
  const idx = E.focusIndex(ed);
  if (idx < 0) {
    say(ed, "focus a span first (click it, or J / K), then N", "error");
    return;
  }
  const s = ed.cur[idx];
  ed.noteFor = spanId(s);
  Toolbar.showNote(ed, s);
}

function commitNote(ed, text) {
  const id = ed.noteFor;
  const idx = ed.cur.findIndex((s) => spanId(s) === id);
  if (idx >= 0) commit(ed, setNote(ed.cur, idx, text), { focus: { kind: "span", id }, keepSel: true });
  closeNote(ed);
}

function closeNote(ed) {
  ed.noteFor = null;
  Toolbar.hideNote(ed);
  ed.st.root.focus({ preventScroll: true });
}

// --- save ----------------------------------------------------------------------------------

/** Send the spans to the app (setTriggerValue "save"); `next`: and go to the next answer. */
function save(ed, next) {
  const api = ed.st.api;
  /** @type {SavePayload} */
  const payload = {
    spans: plainSpans(ed.cur),
    base_version: ed.baseVersion,
    next: !!next,
    draft_key: ed.draftKey,
    doc_id: ed.docId,
  };
  Drafts.cancel(ed); // a draft after the save would carry the old version
  ed.save.pending = { key: spansKey(ed.cur), base: ed.baseVersion };
  ed.save.count += 1;
  ed.save.busy = true;
  clearTimeout(ed.save.timer);
  ed.save.timer = setTimeout(() => { // the app answers with new data (even a refusal) well before
    if (ed.st.ed === ed && ed.save.busy) {
      ed.save.busy = false;
      say(ed, "the app has not confirmed the save (yet)", "error");
      Toolbar.update(ed);
    }
  }, SAVE_CONFIRM_MS);
  if (api && typeof api.setTriggerValue === "function") {
    api.setTriggerValue("save", payload);
    say(ed, next ? "saving… (and on to the next answer)" : "saving…");
  } else {
    say(ed, "cannot save: not connected to the app", "error");
  }
}

return {
  commit, say, label, remove, undo, redo, stepSpan, stepSuggestion, escape,
  accept, reject, restoreRejected, bulk, openNote, commitNote, closeNote, save,
};
})();
