// keys.js — keyboard and button clicks, both dispatched through the actions table.
// Keys work only while the editor has the keyboard focus (the root is focusable), so a
// page's other inputs and Streamlit's own shortcuts keep theirs.

// eslint-disable-next-line no-unused-vars
const Keys = (() => {
"use strict";

const { say } = Commands;

// Where a key event happens: the editor itself, or typing in one of its inputs.
function scopeOf(ed, target) {
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) {
    if (target === ed.ui.noteInput) return "note";
    if (target === ed.ui.bulkInput) return "bulk";
    return null; // any other input keeps its keys
  }
  return "editor";
}

function onKey(st, e) {
  const ed = st.ed;
  if (!ed || e.isComposing) return;
  const target = e.composedPath ? e.composedPath()[0] : e.target;
  const scope = scopeOf(ed, target);
  const a = scope ? Actions.forKey(e, scope) : null;
  if (!a || (a.passIfDisabled && !Actions.enabled(a, ed))) return; // e.g. Tab moves on as usual
  e.preventDefault();
  e.stopPropagation(); // Streamlit's own shortcuts (e.g. R = rerun) must not see it
  say(ed, "");
  if (!(a.noRepeat && e.repeat)) a.run(ed);
  if (scope !== "editor" && ed.noteFor == null) st.root.focus({ preventScroll: true });
  Toolbar.redraw(ed, e.key, e.timeStamp);
}

function onClick(st, e) {
  const ed = st.ed;
  if (!ed) return;
  const b = e.target && e.target.closest ? e.target.closest("button[data-action]") : null;
  if (!b || b.disabled) return;
  const a = Actions.byId(b.dataset.action);
  if (!a) return;
  say(ed, "");
  a.run(ed);
  if (ed.noteFor == null) st.root.focus({ preventScroll: true });
  Toolbar.redraw(ed, "button:" + a.id, e.timeStamp);
}

// Pressing a button must not take the keyboard focus from the editor.
function onButtonDown(st, e) {
  const b = e.target && e.target.closest ? e.target.closest("button") : null;
  if (b && st.ed) e.preventDefault();
}

function attach(st) {
  if (!st.keyHandlers) {
    st.keyHandlers = {
      key: (e) => onKey(st, e),
      click: (e) => onClick(st, e),
      btnDown: (e) => onButtonDown(st, e),
    };
  }
  const hd = st.keyHandlers;
  st.root.addEventListener("keydown", hd.key);
  st.editEl.addEventListener("click", hd.click);
  st.editEl.addEventListener("mousedown", hd.btnDown);
}

function detach(st) {
  const hd = st.keyHandlers;
  if (!hd) return;
  st.root.removeEventListener("keydown", hd.key);
  st.editEl.removeEventListener("click", hd.click);
  st.editEl.removeEventListener("mousedown", hd.btnDown);
}

return { attach, detach };
})();
