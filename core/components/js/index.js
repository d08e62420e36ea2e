// index.js — the component's entry: Streamlit calls the default export with the data.
//
// Streamlit calls the default export again with the SAME parentElement each time the
// data changes and runs only the LAST returned cleanup at unmount, so per-instance state
// lives in a WeakMap keyed by parentElement and listeners are attached once (see
// core/components/STREAMLIT_NOTES.md). View mode draws and appends (view.js); edit mode
// is the span editor (editor.js and what follows it), which keeps the spans here in the
// browser and reports back only a save and, debounced, a draft.

const instances = new WeakMap(); // parentElement -> instance state

function createState(parentElement, root) {
  const { h } = View;
  root.replaceChildren();
  const legendEl = h("div", "plh-legend");
  const box = h("div", "plh-text");
  box.setAttribute("role", "document");
  const tip = h("div", "plh-tip");
  tip.setAttribute("role", "tooltip");
  tip.hidden = true;
  const editEl = h("div", "ple"); // the editor's toolbar, banners and status (edit mode)
  editEl.hidden = true;
  root.append(legendEl, editEl, box, tip);

  const st = {
    parentElement, root, legendEl, editEl, box, tip,
    d: null, docId: null, mode: null, legendKey: null, focus: null,
    spans: [], chunk: null, chunkCount: 0, chunkChars: 0, width: 0, hover: -1, renders: 0, appends: 0,
    ed: null, api: null, attached: false,
  };
  st.isToken = (el) =>
    !!el && el.nodeType === 1 && el.parentNode && el.parentNode.parentNode === box && el.dataset.i != null;

  const hideTip = () => Tooltip.hide(st);
  const onDocScroll = () => {
    if (!root.isConnected) st.cleanup(); // unmounted without a cleanup call
    else hideTip();
  };
  const onOver = (e) => {
    if (st.ed && (st.ed.drag || st.ed.nativeDrag)) return; // no tooltip while selecting
    if (st.isToken(e.target)) Tooltip.show(st, e.target);
  };
  const onOut = (e) => {
    if (!st.isToken(e.relatedTarget)) hideTip();
  };
  // Listeners are attached while the instance is live. Streamlit calls a returned
  // cleanup at unmount, but also right away for an update that was superseded while the
  // module loaded; so cleanup only detaches, and the next call on the same element
  // re-attaches and keeps the DOM (no re-render, no second "mount").
  st.attach = () => {
    if (st.attached) return;
    box.addEventListener("mouseover", onOver);
    box.addEventListener("mouseout", onOut);
    // Any scroll (page or text box) moves the token away from the tooltip; scroll
    // events are not composed, so the box inside the shadow root needs its own.
    document.addEventListener("scroll", onDocScroll, { capture: true, passive: true });
    box.addEventListener("scroll", hideTip, { passive: true });
    Keys.attach(st);
    Mouse.attach(st);
    if (st.ed) Drafts.resume(st.ed); // a draft held back while detached
    st.attached = true;
  };
  st.cleanup = () => {
    if (!st.attached) return;
    box.removeEventListener("mouseover", onOver);
    box.removeEventListener("mouseout", onOut);
    document.removeEventListener("scroll", onDocScroll, { capture: true });
    box.removeEventListener("scroll", hideTip);
    Keys.detach(st);
    Mouse.detach(st);
    if (st.ed) Drafts.hold(st.ed);
    hideTip();
    st.attached = false;
  };
  st.attach();
  instances.set(parentElement, st);
  window.__probelensMounts = (window.__probelensMounts || 0) + 1; // instances created (tests read it)
  return st;
}

const EDIT_ATTRIBUTES = ["data-spans", "data-focus", "data-selection", "data-suggestions-shown", "data-base-version",
  "data-dirty", "data-undo", "data-redo", "data-saves", "data-key-ms", "data-draft-restored", "data-drafts-sent",
  "data-caret", "role", "aria-label", "aria-activedescendant"];

function teardownEditor(st) {
  const ed = st.ed;
  if (ed) {
    clearTimeout(ed.save.timer);
    // another document: its draft stays in localStorage (restored when it comes back);
    // no server draft now, it would name a document no longer shown
    Drafts.cancel(ed);
  }
  st.ed = null;
  st.editEl.replaceChildren();
  st.editEl.hidden = true;
  st.root.classList.remove("edit");
  st.root.removeAttribute("tabindex");
  for (const a of EDIT_ATTRIBUTES) st.root.removeAttribute(a);
}

function sameInts(a, b) {
  if (!a || !b || a.length !== b.length) return a === b;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameTexts(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Edit mode: a new document (or new tokens) builds a new editor; the same one merges. */
function renderEdit(st, d) {
  let ed = st.ed;
  const same = !!ed && st.mode === "edit" && ed.draftKey === d.edit.draft_key && sameTexts(ed.texts, d.texts)
    && sameInts(st.d.edit.starts, d.edit.starts) && sameInts(st.d.edit.ends, d.edit.ends);
  if (!same) {
    if (ed) teardownEditor(st);
    View.fullRender(st, d);
    ed = Editor.create(st, d);
    View.legend(st, d, true);
    Toolbar.build(ed, Actions.ACTIONS, Actions.GESTURES);
    st.root.classList.add("edit");
    st.root.tabIndex = 0;
    // the editor takes its keys itself (arrows move its caret): an application to screen readers
    st.root.setAttribute("role", "application");
    st.root.setAttribute("aria-label",
      "span editor: arrow keys move a caret by token, Shift+arrows or the mouse select, the keys 1 2 3 0 label");
    Sync.applyConflict(ed, d.edit.conflict);
    st.d = d;
    Sync.openStoredDraft(ed);
    Toolbar.redraw(ed, "mount", null);
    const active = document.activeElement;
    if (!active || active === document.body) st.root.focus({ preventScroll: true });
  } else {
    // the same document again (a rerun): new scores are restyled, new props merged
    Editor.rescore(ed, st.d, d);
    st.d = d;
    ed.docId = d.doc_id;
    Sync.applyProps(ed, d);
    Toolbar.redraw(ed, "update", null);
  }
  st.docId = d.doc_id;
  st.mode = "edit";
  View.finishRender(st, d);
  View.applyFocus(st, d, !same);
  return same ? "update" : "full";
}

let styleVersion = 0; // bumped when a payload brings a different style (labels, colours)

function render(parentElement, data, tData, api) {
  const root = parentElement.querySelector(".plh-root");
  if (!root) return;
  const d = Payload.normalise(data);
  if (Colour.configure(d.style)) {
    Spans.configure(d.style);
    styleVersion += 1;
  }

  let st = instances.get(parentElement);
  if (!st || st.root !== root || !root.isConnected) st = createState(parentElement, root);
  else st.attach();
  if (api) st.api = api;
  if (st.styleVersion !== styleVersion) {
    // heatmap.css draws label lines with these variables: one definition, the payload's.
    for (const [name, value] of Object.entries(Colour.cssVariables())) st.root.style.setProperty(name, value);
    st.styleVersion = styleVersion;
  }

  st.width = st.box.clientWidth; // read before any DOM change: no forced layout
  if (st.mode === "edit" && d.mode !== "edit") {
    teardownEditor(st); // back to a plain heatmap: a full view render follows
    st.d = null;
    st.mode = null;
  }
  const prevCount = d.mode !== "edit" && st.d && st.docId === d.doc_id ? st.d.n : 0;
  const kind = d.mode === "edit" ? renderEdit(st, d) : View.render(st, d);
  Tooltip.refresh(st);
  Perf.paint(st.root, d, tData, kind, kind === "append" ? prevCount : 0);
}

// One task hop before rendering. Streamlit calls the cleanup of an update that was
// superseded while the module loaded in a microtask right after our call returns; such a
// call can even arrive AFTER the newer one (seen on cold loads: 5 tokens, then 4). Its
// cleanup runs before the next task, so cancelling the pending render drops stale data.
const renderQueue = [];
const renderChannel = new MessageChannel();
renderChannel.port1.onmessage = () => {
  const jobs = renderQueue.splice(0, renderQueue.length);
  for (const job of jobs) {
    if (job.cancelled) continue;
    job.done = true;
    render(job.parentElement, job.data, job.tData, job.api);
  }
};

/**
 * The component (Streamlit components v2): called with the data on mount and on every
 * update; returns the cleanup Streamlit runs at unmount.
 * @param {{parentElement: (HTMLElement|ShadowRoot), data: HeatmapData,
 *          setTriggerValue: function(string, SavePayload): void,
 *          setStateValue: function(string, DraftPayload): void}} component
 */
export default function heatmap(component) {
  const job = {
    parentElement: component.parentElement,
    data: component.data,
    api: { setTriggerValue: component.setTriggerValue, setStateValue: component.setStateValue },
    tData: performance.now(),
    cancelled: false,
    done: false,
  };
  renderQueue.push(job);
  if (renderQueue.length === 1) renderChannel.port2.postMessage(0);
  return () => {
    if (!job.done) {
      job.cancelled = true; // superseded before it rendered (or unmounted meanwhile)
      return;
    }
    const st = instances.get(job.parentElement);
    if (st) st.cleanup(); // unmount: detach listeners
  };
}
