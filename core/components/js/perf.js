// perf.js — timing instrumentation, OFF unless turned on.
//
// Turn it on with `window.__probelensPerf = true` (before or after the component mounts;
// the tests and benchmarks that read timings do it with Playwright's add_init_script).
// When on, each render appends to `window.__probelensPaint` and each handled key, click
// or drag to `window.__probelensEdit`, and the root element gets `data-render-ms`,
// `data-paint-ms` and `data-key-ms`. "Painted" is a task posted from the next
// requestAnimationFrame, i.e. after that frame's style, layout and paint.
// When off, nothing here runs beyond the flag check.

/**
 * One render, in window.__probelensPaint (times are performance.now() ms).
 * @typedef {Object} PaintRecord
 * @property {number} count          tokens shown
 * @property {string} kind           "full" | "append" | "update"
 * @property {string} doc_id
 * @property {number} t_data         the component was called with the data
 * @property {number} t_dom          the DOM was updated
 * @property {number} t_frame        the next animation frame began
 * @property {number} t_painted      after that frame was painted
 * @property {number} wall_painted   Date.now() at t_painted
 * @property {?number} produced_at   the payload's produced_at (newest token, epoch ms)
 * @property {?number[]} produced_new produced_at of the tokens new in this render
 */
/**
 * One handled key / click / drag in the editor, in window.__probelensEdit.
 * @typedef {Object} EditRecord
 * @property {string} key            e.key, "button:<action id>", "click", "drag", ...
 * @property {number} t_event        the event's timeStamp
 * @property {number} t_dom
 * @property {number} t_painted
 * @property {number} spans          spans after the edit
 */

// eslint-disable-next-line no-unused-vars
const Perf = (() => {
"use strict";

const MAX_RECORDS = 5000; // per log; older records are dropped

function on() {
  return typeof window !== "undefined" && !!window.__probelensPerf;
}

// The one after-paint hook: fn(tFrame, tPainted) once the next frame has been painted.
function afterPaint(fn) {
  requestAnimationFrame(() => {
    const tFrame = performance.now();
    // A task posted from rAF runs after this frame's style, layout and paint.
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      fn(tFrame, performance.now());
    };
    ch.port2.postMessage(0);
  });
}

function push(name, record) {
  const log = (window[name] = window[name] || []);
  log.push(record);
  if (log.length > MAX_RECORDS) log.splice(0, log.length - MAX_RECORDS);
}

/** A render of `d` (tokens from `prevCount` on are new) that started at tData. */
function paint(root, d, tData, kind, prevCount) {
  if (!on()) return;
  const tDom = performance.now();
  root.setAttribute("data-render-ms", (tDom - tData).toFixed(2));
  const pa = d.produced_at;
  let newest = null;
  let producedNew = null;
  if (Array.isArray(pa)) {
    newest = pa.length ? pa[pa.length - 1] : null;
    producedNew = pa.slice(prevCount, d.n);
  } else if (typeof pa === "number" && Number.isFinite(pa)) {
    newest = pa;
  }
  afterPaint((tFrame, tPainted) => {
    push("__probelensPaint", {
      count: d.n, kind, doc_id: d.doc_id || "", t_data: tData, t_dom: tDom,
      t_frame: tFrame, t_painted: tPainted, wall_painted: Date.now(),
      produced_at: newest, produced_new: producedNew,
    });
    root.setAttribute("data-paint-ms", (tPainted - tData).toFixed(2));
  });
}

/** An editor event (`what`, timeStamp tEvent) whose drawing is done; `spans` after it. */
function edit(root, what, tEvent, spans) {
  if (tEvent == null || !on()) return;
  const tDom = performance.now();
  afterPaint((tFrame, tPainted) => {
    push("__probelensEdit", { key: what, t_event: tEvent, t_dom: tDom, t_painted: tPainted, spans });
    root.setAttribute("data-key-ms", (tPainted - tEvent).toFixed(2));
  });
}

return { on, paint, edit };
})();
