// tooltip.js — the token tooltip: text with visible whitespace, id, score, logprob,
// entropy, gold label and outcome (and in edit mode the span, note and suggestions).

// eslint-disable-next-line no-unused-vars
const Tooltip = (() => {
"use strict";

const { GOLD, OUTCOMES, finite } = Colour;
const { h, visibleWhitespace, outcome } = View;

function fmt(x, digits) {
  return finite(x) ? x.toFixed(digits) : "—";
}

function fill(tip, d, i, ed) {
  const rows = [];
  rows.push(h("div", "plh-tip-text", visibleWhitespace(d.texts[i])));
  const add = (k, v) => {
    const row = h("div", "plh-tip-row");
    row.append(h("span", "plh-tip-k", k), h("span", "plh-tip-v", v));
    rows.push(row);
  };
  add("token", `#${i}  id ${d.ids[i]}`);
  add("score", finite(d.scores[i]) ? fmt(d.scores[i], 3) : "— (not scored yet)");
  add("logprob", fmt(d.logprobs[i], 3));
  add("entropy", fmt(d.entropies[i], 3));
  if (d.gold) {
    const label = d.gold[i];
    add("gold", label == null ? "— (outside gold spans)" : (GOLD[label] ? GOLD[label].word : label));
    const o = outcome(d, i);
    if (o) add("outcome", `${o}: ${OUTCOMES[o]}`);
  } else if (!ed) {
    add("gold", "—");
  }
  if (ed) Editor.tipRows(ed, i, add);
  tip.replaceChildren(...rows);
}

/** Show the tooltip of token element `el` below it (above when there is no room). */
function show(st, el) {
  const i = Number(el.dataset.i);
  if (!st.d || !(i >= 0 && i < st.d.n)) return;
  const tip = st.tip;
  st.hover = i;
  fill(tip, st.d, i, st.ed);
  tip.hidden = false;
  // position: fixed, in viewport coordinates, so no ancestor's overflow clips it.
  const rects = el.getClientRects();
  const r = rects.length ? rects[0] : el.getBoundingClientRect();
  const tipW = tip.offsetWidth;
  const tipH = tip.offsetHeight;
  const vw = document.documentElement.clientWidth || window.innerWidth;
  const vh = document.documentElement.clientHeight || window.innerHeight;
  const left = Math.max(4, Math.min(r.left, vw - tipW - 4));
  const below = r.bottom + 6;
  const top = below + tipH <= vh - 4 || r.top - tipH - 6 < 0 ? below : r.top - tipH - 6;
  tip.style.left = `${left}px`;
  tip.style.top = `${top}px`;
}

function hide(st) {
  st.hover = -1;
  st.tip.hidden = true;
}

/** After a render: the hovered token's tooltip shows its new values. */
function refresh(st) {
  if (st.hover >= 0 && st.hover < st.spans.length) show(st, st.spans[st.hover]);
}

return { show, hide, refresh };
})();
