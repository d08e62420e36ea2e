// toolbar.js — the editor's controls, built from the actions table (actions.js): two bars
// of buttons, each showing its key once (the key legend: there is no other), the conflict
// and draft banners, the note row and the status line (whose hint names the gestures). update() brings them in line with the state after every
// action; redraw() is the end of every action: repaint the dirty tokens, scroll, update.

// eslint-disable-next-line no-unused-vars
const Toolbar = (() => {
"use strict";

const { GOLD } = Colour;
const { h } = View;
const { spansKey, plainSpans } = Spans;
const E = Editor;

function valueOf(x, ed) {
  return typeof x === "function" ? x(ed) : x;
}

/** The button of action `a` (its key in a <kbd>, its legend as the tooltip). */
function button(a, ed) {
  const b = h("button", "ple-btn");
  b.type = "button";
  b.tabIndex = -1; // keys go to the editor; clicking a button keeps its focus there
  b.dataset.action = a.id;
  if (a.label) b.append(h("span", "plh-sample " + GOLD[a.label].cls, "ab"));
  if (a.kbd) b.append(h("kbd", null, a.kbd), document.createTextNode(" "));
  b.append(document.createTextNode(valueOf(a.text, ed)));
  b.title = valueOf(a.title, ed);
  if (a.primary) b.classList.add("ple-primary");
  if (a.pressed) b.setAttribute("aria-pressed", a.pressed(ed) ? "true" : "false");
  return b;
}

function buttonsOf(actions, bar, ed, ui) {
  const out = [];
  for (const a of actions) {
    if (a.bar !== bar) continue;
    if (a.sep) out.push(h("span", "ple-sep"));
    const b = button(a, ed);
    ui.buttons.push([a, b]);
    out.push(b);
    if (a.id === "bulk") out.push(ui.bulkInput);
  }
  return out;
}

/** Build the controls of a new document from `actions` (Actions.ACTIONS); `gestures`
 * (Actions.GESTURES) make the status line's hint. */
function build(ed, actions, gestures) {
  const el = ed.st.editEl;
  const ui = { actions, buttons: [], conflictShown: null, draftShown: null };
  ed.ui = ui;
  ui.bulkInput = h("input", "ple-num");
  ui.bulkInput.type = "number";
  ui.bulkInput.min = "0";
  ui.bulkInput.max = "1";
  ui.bulkInput.step = "0.05";
  ui.bulkInput.value = String(ed.bulkMin);
  ui.bulkInput.title = "lowest score to accept";
  ui.bulkInput.setAttribute("aria-label", "bulk accept minimum score");

  // Editing and saving on the first bar, the probe's suggestions on the second. The keys
  // on the buttons light up while they work (CSS: the editor has the keyboard focus).
  ui.state = h("span", "ple-state");
  const bar1 = h("div", "ple-bar");
  bar1.append(...buttonsOf(actions, "edit", ed, ui), h("span", "ple-grow"), ui.state,
    ...buttonsOf(actions, "save", ed, ui));
  const bar2 = h("div", "ple-bar");
  const sugLabel = h("span", "ple-group", "suggestions");
  sugLabel.prepend(h("span", "ple-sug-sample", "ab"));
  bar2.append(sugLabel, ...buttonsOf(actions, "suggest", ed, ui));
  ui.hint = gestures.map(([how, what]) => `${how}: ${what}`).join(" · ");

  ui.conflict = h("div", "ple-banner ple-conflict");
  ui.conflict.hidden = true;
  ui.draft = h("div", "ple-banner ple-draft");
  ui.draft.hidden = true;

  ui.noteRow = h("div", "ple-note");
  ui.noteRow.hidden = true;
  ui.noteLabel = h("label", "ple-note-label");
  ui.noteInput = h("input", "ple-note-input");
  ui.noteInput.type = "text";
  ui.noteInput.maxLength = 2000;
  ui.noteInput.placeholder = "verification note (Enter saves, Esc cancels)";
  ui.noteRow.append(ui.noteLabel, ui.noteInput, ...buttonsOf(actions, "note", ed, ui));

  ui.status = h("div", "ple-status");
  ui.statusText = h("span", "ple-status-text");
  ui.msg = h("span", "ple-msg");
  ui.msg.setAttribute("role", "status");
  ui.status.append(ui.statusText, ui.msg);

  el.replaceChildren(bar1, bar2, ui.conflict, ui.draft, ui.noteRow, ui.status);
  el.hidden = false;
}

function bannerButtons(ed, bar) {
  return ed.ui.actions.filter((a) => a.bar === bar).map((a) => button(a, ed));
}

function fillConflict(ed) {
  const ui = ed.ui;
  const conf = ed.conf;
  const c = conf.data;
  const key = `${conf.key}|${conf.resolved}|${conf.show}`;
  if (key === ui.conflictShown) return; // rebuilt only when it changes
  ui.conflictShown = key;
  ui.conflict.hidden = !c;
  if (!c) return;
  const who = c.saved_by || "Someone";
  const v = c.their_version != null ? `version ${c.their_version}` : "a newer version";
  const parts = [];
  if (!conf.resolved) {
    parts.push(h("strong", null, `${who} saved ${v} of this answer meanwhile.`),
      document.createTextNode(" Your edits are kept here, not saved yet. "));
  } else if (conf.resolved === "theirs") {
    parts.push(h("strong", null, `Taking ${who}'s spans (${v}).`), document.createTextNode(" Save to confirm; Ctrl+Z brings yours back. "));
  } else {
    parts.push(h("strong", null, `Keeping yours over ${who}'s ${v}.`), document.createTextNode(" Save to write them. "));
  }
  const [theirs, ...rest] = bannerButtons(ed, "conflict");
  parts.push(theirs);
  if (conf.show) parts.push(h("span", "ple-theirs-sample", "theirs"));
  parts.push(...rest);
  ui.conflict.replaceChildren(...parts);
}

function timeOf(ms) {
  const t = new Date(ms);
  return Number.isFinite(t.getTime()) ? t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "earlier";
}

function fillDraftNote(ed) {
  const ui = ed.ui;
  const r = ed.draft.restored;
  if (r === ui.draftShown) return;
  ui.draftShown = r;
  ui.draft.hidden = !r;
  if (!r) return;
  const [restore, discard] = bannerButtons(ed, "draft");
  if (r.kind === "restored") {
    ui.draft.replaceChildren(
      h("span", "ple-draft-text", `Draft restored: unsaved edits from ${timeOf(r.at)} (kept in this browser).`), discard);
  } else {
    ui.draft.replaceChildren(
      h("span", "ple-draft-text", `An unsaved draft from ${timeOf(r.at)} (made on version ${r.base}; this is version ${ed.props.base}) is kept in this browser.`),
      restore, discard);
  }
}

// What is selected or focused; the keys for it are on the buttons, not repeated here.
function statusText(ed) {
  if (ed.sel) {
    const r = E.selectionSpan(ed);
    if (r.error) return `Selection: ${r.error}`;
    const how = ed.sel.kind === "char" ? "exact characters" : "whole tokens";
    return `Selected «${E.excerpt(ed, r.start, r.end)}» (${how}) — label it`;
  }
  if (ed.focus && ed.focus.kind === "span") {
    const idx = E.focusIndex(ed);
    if (idx >= 0) {
      const s = ed.cur[idx];
      let t = `Span ${idx + 1}/${ed.cur.length} «${E.excerpt(ed, s.start, s.end)}» — ${s.label} (${GOLD[s.label].word})`;
      if (s.note) t += ` · note: ${s.note}`;
      return t;
    }
  }
  if (E.sugFocused(ed)) {
    const sg = ed.sugs[ed.focus.k];
    return `Suggestion «${E.excerpt(ed, sg.start, sg.end)}» score ${sg.score.toFixed(2)} — accept, reject or label it`;
  }
  if (ed.caretOn && ed.caret >= 0) {
    const i = ed.caret;
    return `The caret is on «${E.excerpt(ed, ed.starts[i], ed.ends[i], 40).trim()}» (token ${i + 1} of ${ed.n}) — ⇧← ⇧→ select from it`;
  }
  const shown = E.visibleSuggestionIndexes(ed).length;
  return `${ed.cur.length} span${ed.cur.length === 1 ? "" : "s"}, ${shown} suggestion${shown === 1 ? "" : "s"} shown — ${ed.ui.hint}`;
}

/** Buttons, banners, status and the root's state attributes, from the state. */
function update(ed) {
  const ui = ed.ui;
  for (const [a, b] of ui.buttons) {
    if (a.enabled) b.disabled = !a.enabled(ed);
    if (a.shown) b.hidden = !a.shown(ed);
    if (a.pressed) b.setAttribute("aria-pressed", a.pressed(ed) ? "true" : "false");
    if (typeof a.text === "function") {
      const text = a.text(ed);
      if (b.lastChild.textContent !== text) b.lastChild.textContent = text;
    }
  }
  // a refused save (a conflict) is never "saved", even when the page hands the editor back
  // the person's own spans as its props (Annotate keeps them there while the conflict lasts)
  const dirty = spansKey(ed.cur) !== ed.props.key || ed.baseVersion !== ed.props.base || !!ed.conf.data;
  // spans pre-filled from gold (a demo answer) are not this person's until they save them
  const prefilled = !dirty && !!ed.props.prefilled;
  const state = ed.save.busy ? " · saving…" : dirty ? " · unsaved changes" : prefilled ? " · pre-filled from gold · not saved" : " · saved";
  ui.state.textContent = `v${ed.baseVersion}${state}`;
  ui.state.classList.toggle("ple-dirty", dirty || prefilled);
  ui.statusText.textContent = statusText(ed);
  ui.msg.textContent = ed.message.text;
  ui.msg.className = "ple-msg" + (ed.message.kind === "error" ? " ple-error" : "");
  fillConflict(ed);
  fillDraftNote(ed);
  // for tests and the page: the state as attributes on the root (code points)
  const root = ed.st.root;
  const idx = E.focusIndex(ed);
  root.setAttribute("data-spans", JSON.stringify(plainSpans(ed.cur)));
  root.setAttribute("data-focus", ed.focus ? (ed.focus.kind === "span" ? `span:${idx}` : `sug:${ed.focus.k}`) : "");
  const r = ed.sel ? E.selectionSpan(ed) : null;
  root.setAttribute("data-selection", r && !r.error ? `${r.start}-${r.end}` : "");
  root.setAttribute("data-caret", ed.caretOn && ed.caret >= 0 ? String(ed.caret) : "");
  root.setAttribute("data-suggestions-shown", String(E.visibleSuggestionIndexes(ed).length));
  root.setAttribute("data-base-version", String(ed.baseVersion));
  root.setAttribute("data-dirty", dirty ? "1" : "0");
  root.setAttribute("data-prefilled", prefilled ? "1" : "0");
  root.setAttribute("data-undo", String(ed.undo.length));
  root.setAttribute("data-redo", String(ed.redo.length));
  root.setAttribute("data-saves", String(ed.save.count));
}

/** The end of every action: repaint what changed, scroll to a new focus, update the
 * controls; with timing on, record `what` (an event at tEvent) once painted. */
function redraw(ed, what, tEvent) {
  E.flush(ed);
  if (ed.scrollTo >= 0) {
    const el = ed.st.spans[ed.scrollTo];
    ed.scrollTo = -1;
    if (el) el.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  Outline.draw(ed);
  update(ed);
  Perf.edit(ed.st.root, what, tEvent, ed.cur.length);
}

function showNote(ed, s) {
  const ui = ed.ui;
  ui.noteLabel.textContent = `Note on «${E.excerpt(ed, s.start, s.end, 40)}»`;
  ui.noteInput.value = s.note || "";
  ui.noteRow.hidden = false;
  ui.noteInput.focus({ preventScroll: true });
  ui.noteInput.select();
}

function hideNote(ed) {
  ed.ui.noteRow.hidden = true;
}

return { build, update, redraw, showNote, hideNote };
})();
