// sync.js — the editor meets the outside: new data from the app for the same document
// (after a save, a refused save, new suggestions), a draft stored in this browser, and a
// conflict (someone else saved first). The page decides; the editor never drops edits
// silently.

// eslint-disable-next-line no-unused-vars
const Sync = (() => {
"use strict";

const { spansKey, normaliseSpans, validSpanList } = Spans;
const { commit, say } = Commands;

// --- new data for the same document --------------------------------------------------------

/**
 * Merge what the app sent. The local edits are kept if they are what was saved (or
 * nothing changed locally); spans the app changes otherwise become one undoable step.
 * While a conflict is given the local spans are never replaced.
 */
function applyProps(ed, d) {
  const e = d.edit;
  if (ed.save.busy) {
    // whatever the app did with the save, it has answered
    ed.save.busy = false;
    clearTimeout(ed.save.timer);
    if (e.conflict) say(ed, "not saved: someone saved a newer version (see above)", "error");
  }
  const spans = validSpanList(e.spans, ed.chars.length) || [];
  const key = spansKey(spans);
  const prev = ed.props;
  if (key !== prev.key || e.base_version !== prev.base) {
    const clean = spansKey(ed.cur) === prev.key;
    const pend = ed.save.pending;
    ed.props = { base: e.base_version, spans, key, prefilled: e.prefilled };
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
      ed.save.pending = null;
      say(ed, `saved ✓ (version ${e.base_version})`);
    }
    ed.draft.lastSent = spansKey(ed.cur) === key ? key + "@" + e.base_version : ed.draft.lastSent;
    Drafts.writeLocal(ed);
  }
  ed.props.prefilled = e.prefilled; // a save turns a pre-fill into a stored version
  // new suggestions (e.g. another threshold): keep rejections of the same ranges
  const sugKey = JSON.stringify(e.suggestions);
  if (sugKey !== ed.sugKey) Editor.replaceSuggestions(ed, e.suggestions, sugKey);
  applyConflict(ed, e.conflict);
}

// --- conflict --------------------------------------------------------------------------------

/** A new (or no) conflict from the app: their spans are drawn per token in ed.thr. */
function applyConflict(ed, conflict) {
  const c = ed.conf;
  const key = conflict ? JSON.stringify(conflict) : "";
  if (key === c.key) return;
  c.key = key;
  c.data = conflict;
  c.resolved = null;
  let theirs = [];
  if (conflict) {
    try {
      theirs = normaliseSpans(validSpanList(conflict.theirs, ed.chars.length) || [], ed.chars);
    } catch (err) {
      theirs = [];
    }
  }
  c.theirs = theirs;
  for (let i = 0; i < ed.n; i++) {
    if (ed.thr[i] >= 0) {
      ed.thr[i] = -1;
      Editor.markDirty(ed, i);
    }
  }
  if (theirs.length) Editor.relabelTokens(ed, 0, Infinity, theirs, ed.thr);
  if (!conflict) c.show = false;
}

/** The banner's buttons: "theirs" (show / hide), "take" (theirs, undoable), "mine". Both of
 * the latter make the next save go on top of their version, knowingly. */
function resolveConflict(ed, action) {
  const c = ed.conf;
  if (!c.data) return;
  const theirVersion = c.data.their_version;
  if (action === "theirs") {
    c.show = !c.show;
    for (let i = 0; i < ed.n; i++) if (ed.thr[i] >= 0) Editor.markDirty(ed, i);
  } else if (action === "take") {
    commit(ed, c.theirs, { focus: null });
    if (theirVersion != null) ed.baseVersion = theirVersion;
    c.resolved = "theirs";
    Drafts.writeLocal(ed);
    say(ed, "took their spans (Ctrl+Z brings yours back); save to confirm");
  } else if (action === "mine") {
    if (theirVersion != null) ed.baseVersion = theirVersion;
    c.resolved = "mine";
    Drafts.writeLocal(ed);
    say(ed, "keeping your spans; save to write them over theirs");
  }
}

// --- a draft stored in this browser ------------------------------------------------------------

/**
 * On opening a document: a stored draft for this version is applied (undoable, "draft
 * restored"); one for another version is offered (restore / discard), never applied
 * silently; one equal to the spans given is deleted.
 */
function openStoredDraft(ed) {
  const dr = Drafts.readLocal(ed);
  if (!dr) return;
  const key = spansKey(dr.spans);
  if (dr.base_version === ed.props.base) {
    Editor.rejectRanges(ed, dr.rejected);
    if (key === ed.props.key) return;
    commit(ed, dr.spans, { focus: null }); // undoable: Ctrl+Z goes back to the saved spans
    ed.draft.restored = { kind: "restored", at: dr.saved_at, base: dr.base_version };
    ed.st.root.setAttribute("data-draft-restored", "1");
    return;
  }
  if (key === ed.props.key) {
    Drafts.remove(ed);
    return;
  }
  ed.draft.restored = { kind: "other", at: dr.saved_at, base: dr.base_version, spans: dr.spans };
}

/** The draft banner's buttons: "discard" (back to the saved spans) or "restore" (another version's). */
function resolveDraft(ed, action) {
  const r = ed.draft.restored;
  if (!r) return;
  if (action === "discard") {
    ed.draft.restored = null;
    if (r.kind === "restored") commit(ed, ed.props.spans, { focus: null });
    Drafts.remove(ed);
    say(ed, "draft discarded");
  } else if (action === "restore" && r.kind === "other") {
    ed.draft.restored = { kind: "restored", at: r.at, base: r.base };
    commit(ed, r.spans, { focus: null });
  }
}

return { applyProps, applyConflict, resolveConflict, openStoredDraft, resolveDraft };
})();
