// colour.js — the score colour scale, the label colours and the outcomes' words, as the
// payload's `style` gives them.
//
// The labels (names, words, values, class keys) and the colours are defined once, in Python
// (core/components/heatmap_data.py::style_payload); every payload carries them and
// `configure(style)` takes them in. Nothing here holds a copy. Pure: no DOM, no state but
// that style (and a small cache of computed colours). Loadable on its own (node:
// `require("./colour.js")`), which the parity tests do after configuring it.

// eslint-disable-next-line no-unused-vars
const Colour = (() => {
"use strict";

// Filled in place by configure(), so names other files took at load time stay valid.
const STOPS = []; // [position, [r, g, b]]
const GOLD = {}; // label -> { cls, key, color, word, value }, most severe first
const LINE_TONE_FROM = []; // tone 0 below the first, 1 from it, 2 from the second
const LINE_COLOURS = []; // per tone: label (or "suggestion") -> colour
const LINE_CLS = ["", "ln1", "ln2"]; // heatmap.css classes of tones 1 and 2
const S = { unknown: "", lightTextFrom: Infinity, darkText: "", lightText: "", suggestion: "suggestion", key: "" };
// What the outcome outlines mean (TP/FP/FN -> meaning, legend word), from the style too.
const OUTCOMES = {};
const OUTCOME_WORDS = {};

function hex2(v) {
  return (v < 16 ? "0" : "") + v.toString(16);
}

function finite(x) {
  return typeof x === "number" && Number.isFinite(x);
}

const colorCache = new Map(); // scores arrive rounded to 4 decimals: at most 10,001 entries

/** Take the payload's style (labels, scale, line palettes); true when it changed. */
function configure(style) {
  if (!style || typeof style !== "object" || !Array.isArray(style.labels) || !Array.isArray(style.scale)) return false;
  const key = JSON.stringify(style);
  if (key === S.key) return false;
  S.key = key;
  STOPS.splice(0, STOPS.length, ...style.scale.map(([p, c]) => [p, [c[0], c[1], c[2]]]));
  for (const name of Object.keys(GOLD)) delete GOLD[name];
  for (const l of style.labels) GOLD[l.name] = { cls: "g-" + l.key, key: l.key, color: l.color, word: l.word, value: l.value };
  LINE_TONE_FROM.splice(0, LINE_TONE_FROM.length, ...(style.line_tone_from || []));
  LINE_COLOURS.splice(0, LINE_COLOURS.length, ...(style.lines || []).map((p) => ({ ...p })));
  S.unknown = style.unknown;
  S.lightTextFrom = style.light_text_from;
  S.darkText = style.dark_text;
  S.lightText = style.light_text;
  S.suggestion = style.suggestion || "suggestion";
  for (const o of Object.keys(OUTCOMES)) delete OUTCOMES[o];
  for (const o of Object.keys(OUTCOME_WORDS)) delete OUTCOME_WORDS[o];
  for (const [o, v] of Object.entries(style.outcomes || {})) {
    OUTCOMES[o] = v.meaning;
    OUTCOME_WORDS[o] = v.word;
  }
  colorCache.clear();
  return true;
}

/** The line colours as CSS variables (heatmap.css draws with them): --plh-l<tone>-<key>. */
function cssVariables() {
  const vars = {};
  LINE_COLOURS.forEach((palette, tone) => {
    for (const [name, g] of Object.entries(GOLD)) vars[`--plh-l${tone}-${g.key}`] = palette[name];
    vars[`--plh-l${tone}-sug`] = palette[S.suggestion];
  });
  vars["--plh-score-half"] = scoreColor(0.5);
  vars["--plh-paper"] = scoreColor(0);
  vars["--plh-dark-text"] = S.darkText;
  vars["--plh-light-text"] = S.lightText;
  return vars;
}

function computeColor(s) {
  for (let k = 1; k < STOPS.length; k++) {
    const [p1, c1] = STOPS[k];
    if (s <= p1) {
      const [p0, c0] = STOPS[k - 1];
      const t = (s - p0) / (p1 - p0);
      let out = "#";
      for (let j = 0; j < 3; j++) out += hex2(Math.floor(c0[j] + (c1[j] - c0[j]) * t + 0.5));
      return out;
    }
  }
  const last = STOPS[STOPS.length - 1][1];
  return "#" + hex2(last[0]) + hex2(last[1]) + hex2(last[2]);
}

/** Background colour of a token with this score, "#rrggbb". */
function scoreColor(score) {
  if (!finite(score) || !STOPS.length) return S.unknown;
  const s = Math.min(1, Math.max(0, score));
  let c = colorCache.get(s);
  if (c === undefined) {
    c = computeColor(s);
    if (colorCache.size < 20000) colorCache.set(s, c);
  }
  return c;
}

/** Whether text on scoreColor(score) is light (the .hi class). */
function isLight(score) {
  return finite(score) && score >= S.lightTextFrom;
}

/** Text colour that stays readable on scoreColor(score). */
function textColor(score) {
  return isLight(score) ? S.lightText : S.darkText;
}

/** The palette of the lines on a token with this score: 0, 1 or 2. */
function lineTone(score) {
  if (!finite(score)) return 0;
  let tone = 0;
  for (const from of LINE_TONE_FROM) if (score >= from) tone += 1;
  return tone;
}

/** The colour of a token whose score is unknown. */
function unknownColor() {
  return S.unknown;
}

return {
  STOPS, GOLD, OUTCOMES, OUTCOME_WORDS, LINE_TONE_FROM, LINE_CLS, LINE_COLOURS,
  configure, cssVariables, finite, scoreColor, textColor, isLight, lineTone, unknownColor,
};
})();
if (typeof module !== "undefined" && module.exports) module.exports = Colour;
