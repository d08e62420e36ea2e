// payload.js — what the Python side sends (core/components/heatmap_data.py::heatmap_payload)
// and what the component sends back, as JSDoc types; normalise() makes any input safe to draw.

/**
 * The component's data: compact parallel arrays, one entry per token.
 * @typedef {Object} HeatmapData
 * @property {number} v                  payload version (1)
 * @property {string} doc_id             a new doc_id always re-renders (else appends)
 * @property {"view"|"edit"} mode
 * @property {number} threshold          in [0, 1]; score >= threshold is "flagged"
 * @property {number} n                  number of tokens
 * @property {string[]} texts            token texts (untrusted model output: textContent only)
 * @property {number[]} ids              token ids
 * @property {(?number)[]} scores        probe scores, 4 decimals; null = not scored (yet)
 * @property {(?number)[]} logprobs      3 decimals
 * @property {(?number)[]} entropies     3 decimals
 * @property {?(?string)[]} gold         per-token gold label, null outside gold spans; null = no gold
 * @property {?number[]} pred            per-token 0/1 from predicted spans; null = the threshold decides
 * @property {?number} focus             token to scroll to and flash (may not have arrived yet)
 * @property {?number} height            max height of the text box in px (it scrolls)
 * @property {?(number|number[])} produced_at  epoch ms of the newest token, or one per token (timing only)
 * @property {?EditData} edit            edit mode only
 * @property {?Object} style             labels (name, word, value, key, color; most severe first), colour scale
 *                                      and line palettes: the only definition the browser has (style_payload)
 */
/**
 * The span editor's part (all positions code points of the NFC answer).
 * @typedef {Object} EditData
 * @property {number[]} starts           per-token start offsets
 * @property {number[]} ends             per-token end offsets
 * @property {Span[]} spans              the annotator's spans, normalised
 * @property {Suggestion[]} suggestions  sorted by position
 * @property {number} base_version       the stored version these spans are
 * @property {string} draft_key          localStorage key of the draft
 * @property {?Conflict} conflict        set while a save was refused (someone saved first)
 */
/**
 * @typedef {Object} Conflict
 * @property {Span[]} theirs
 * @property {number} their_version
 * @property {string} saved_by
 */
/**
 * Sent back with setTriggerValue("save", ...): present only in the run right after a save.
 * @typedef {Object} SavePayload
 * @property {{start: number, end: number, label: string, note: ?string}[]} spans
 * @property {number} base_version       the version these edits were made on
 * @property {boolean} next              true: Enter (save and go to the next answer)
 * @property {string} draft_key
 * @property {string} doc_id
 */
/**
 * Sent back with setStateValue("draft", ...), 1 s after the last edit; persists across runs.
 * @typedef {Object} DraftPayload
 * @property {{start: number, end: number, label: string, note: ?string}[]} spans
 * @property {number} base_version
 * @property {string} draft_key
 * @property {string} doc_id
 * @property {number} saved_at           epoch ms
 */
/**
 * Kept in localStorage under draft_key (drafts.js).
 * @typedef {Object} LocalDraft
 * @property {number} v                  1
 * @property {number} base_version
 * @property {string} doc_id
 * @property {number} saved_at
 * @property {Span[]} spans
 * @property {number[][]} rejected       [start, end] of rejected suggestions
 */

// eslint-disable-next-line no-unused-vars
const Payload = (() => {
"use strict";

const { finite } = Colour;

/** A suggestion's fields; an LLM judge's also carries its label (checked by the app's payload
 * builder), note and name, shown as text only. */
function suggestion(s) {
  const out = { start: s.start, end: s.end, score: s.score };
  for (const k of ["label", "note", "source"]) if (typeof s[k] === "string" && s[k]) out[k] = s[k];
  return out;
}

function normaliseEdit(e, n) {
  const x = e && typeof e === "object" ? e : {};
  const ints = (a) => (Array.isArray(a) && a.length === n && a.every(Number.isInteger) ? a : null);
  const sugs = Array.isArray(x.suggestions)
    ? x.suggestions.filter((s) => s && Number.isInteger(s.start) && Number.isInteger(s.end) && s.start < s.end && finite(s.score))
    : [];
  let conflict = null;
  if (x.conflict && typeof x.conflict === "object") {
    conflict = {
      theirs: Array.isArray(x.conflict.theirs) ? x.conflict.theirs : [],
      their_version: Number.isInteger(x.conflict.their_version) ? x.conflict.their_version : null,
      saved_by: typeof x.conflict.saved_by === "string" ? x.conflict.saved_by : "",
    };
  }
  return {
    starts: ints(x.starts),
    ends: ints(x.ends),
    spans: Array.isArray(x.spans) ? x.spans : [],
    suggestions: sugs.map((s) => Object.freeze(suggestion(s))),
    base_version: Number.isInteger(x.base_version) ? x.base_version : 0,
    draft_key: typeof x.draft_key === "string" ? x.draft_key : "",
    conflict,
  };
}

/** Any data as a well-formed HeatmapData (columns of the wrong length become nulls).
 * @returns {HeatmapData} */
function normalise(data) {
  const d = data && typeof data === "object" ? data : {};
  const texts = Array.isArray(d.texts) ? d.texts.map((t) => (typeof t === "string" ? t : String(t ?? ""))) : [];
  const n = texts.length;
  const col = (x) => (Array.isArray(x) && x.length === n ? x : new Array(n).fill(null));
  return {
    doc_id: typeof d.doc_id === "string" ? d.doc_id : "",
    mode: d.mode === "edit" ? "edit" : "view",
    threshold: finite(d.threshold) ? Math.min(1, Math.max(0, d.threshold)) : 0.5,
    n,
    texts,
    ids: col(d.ids),
    scores: col(d.scores),
    logprobs: col(d.logprobs),
    entropies: col(d.entropies),
    gold: Array.isArray(d.gold) && d.gold.length === n ? d.gold : null,
    pred: Array.isArray(d.pred) && d.pred.length === n ? d.pred : null,
    focus: Number.isInteger(d.focus) ? d.focus : null,
    height: Number.isInteger(d.height) && d.height > 0 ? d.height : null,
    produced_at: d.produced_at ?? null,
    edit: d.mode === "edit" ? normaliseEdit(d.edit, n) : null,
    style: d.style && typeof d.style === "object" ? d.style : null,
  };
}

return { normalise };
})();
