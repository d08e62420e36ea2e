// drafts.js — unsaved edits: kept in the browser's localStorage under draft_key on every
// edit, and sent to the app (setStateValue "draft") 1 s after the last edit.
//
// What to do with a stored draft when a document opens is decided in sync.js.

// eslint-disable-next-line no-unused-vars
const Drafts = (() => {
"use strict";

const { spansKey, plainSpans, validSpanList, normaliseSpans } = Spans;

const DEBOUNCE_MS = 1000;

/** Store the current spans (and rejections) as the draft; none when they are the saved ones. */
function writeLocal(ed) {
  if (!ed.draftKey) return;
  try {
    const same = spansKey(ed.cur) === ed.props.key && ed.baseVersion === ed.props.base;
    if (same && !ed.rejected.size) {
      localStorage.removeItem(ed.draftKey);
      return;
    }
    /** @type {LocalDraft} */
    const draft = {
      v: 1, base_version: ed.baseVersion, doc_id: ed.docId, saved_at: Date.now(),
      spans: plainSpans(ed.cur), rejected: Editor.rejectedRanges(ed),
    };
    localStorage.setItem(ed.draftKey, JSON.stringify(draft));
  } catch (err) {
    // storage full or disabled: the debounced draft to the server still goes out
  }
}

function remove(ed) {
  try {
    localStorage.removeItem(ed.draftKey);
  } catch (err) {
    // ignore
  }
}

/** The stored draft, its spans validated and normalised, or null (a broken one is deleted).
 * @returns {?{base_version: number, saved_at: number, spans: Span[], rejected: ?Array}} */
function readLocal(ed) {
  if (!ed.draftKey) return null;
  let raw = null;
  try {
    raw = localStorage.getItem(ed.draftKey);
  } catch (err) {
    return null;
  }
  if (!raw) return null;
  let dr = null;
  try {
    dr = JSON.parse(raw);
  } catch (err) {
    dr = null;
  }
  let spans = dr && validSpanList(dr.spans, ed.chars.length);
  try {
    if (spans) spans = normaliseSpans(spans, ed.chars); // whatever was stored, make it valid
  } catch (err) {
    spans = null;
  }
  if (!spans || !Number.isInteger(dr.base_version)) {
    remove(ed);
    return null;
  }
  return { base_version: dr.base_version, saved_at: dr.saved_at, spans, rejected: dr.rejected };
}

/** Send the draft to the app once no edit has come for DEBOUNCE_MS. */
function schedule(ed) {
  clearTimeout(ed.draft.timer);
  ed.draft.timer = setTimeout(() => send(ed), DEBOUNCE_MS);
}

function cancel(ed) {
  clearTimeout(ed.draft.timer);
  ed.draft.timer = 0;
}

function send(ed) {
  ed.draft.timer = 0;
  if (ed.st.ed !== ed) return; // another document since
  const key = spansKey(ed.cur) + "@" + ed.baseVersion;
  if (key === ed.draft.lastSent) return;
  const api = ed.st.api;
  if (!api || typeof api.setStateValue !== "function") return;
  ed.draft.lastSent = key;
  /** @type {DraftPayload} */
  const payload = {
    spans: plainSpans(ed.cur), base_version: ed.baseVersion, draft_key: ed.draftKey, doc_id: ed.docId,
    saved_at: Date.now(),
  };
  api.setStateValue("draft", payload);
  const root = ed.st.root;
  root.setAttribute("data-drafts-sent", String((Number(root.getAttribute("data-drafts-sent")) || 0) + 1));
}

/** Detached (unmounted, or a superseded update): no state update for a widget that may be
 * gone; the draft is in localStorage, and goes out if this instance comes back (resume). */
function hold(ed) {
  if (!ed.draft.timer) return;
  cancel(ed);
  ed.draft.held = true;
}

function resume(ed) {
  if (!ed.draft.held) return;
  ed.draft.held = false;
  schedule(ed);
}

return { writeLocal, readLocal, remove, schedule, cancel, hold, resume };
})();
