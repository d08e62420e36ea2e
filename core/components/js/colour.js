// colour.js — the score colour scale and the label colours (mirrors core/components/heatmap_data.py).
//
// Pure: no DOM, no state (a small cache of computed colours aside). Loadable on its own
// (node: `require("./colour.js")`), which tests/test_components.py does to compare the
// colours with Python's.

// eslint-disable-next-line no-unused-vars
const Colour = (() => {
"use strict";

// (position, [r, g, b]); every channel non-increasing => lightness monotonic in score.
const STOPS = [
  [0.0, [255, 255, 255]],
  [0.25, [255, 237, 160]],
  [0.5, [254, 178, 76]],
  [0.75, [240, 59, 40]],
  [1.0, [165, 0, 38]],
];
const UNKNOWN_COLOR = "#e0e0e0";
const DARK_TEXT = "#000000";
const LIGHT_TEXT = "#ffffff";
const LIGHT_TEXT_FROM = 0.8;
// Per label: CSS class of its underline, colour, the UI word, training value (1 / 0 / ignored).
const GOLD = {
  "Not Supported": { cls: "g-ns", color: "#c2185b", word: "hallucinated", value: 1 },
  "Insufficient Information": { cls: "g-ii", color: "#7b1fa2", word: "unverifiable", value: 1 },
  Supported: { cls: "g-s", color: "#2a7230", word: "supported", value: 0 },
  "N/A": { cls: "g-na", color: "#666666", word: "ignore", value: null },
};
// Underlines and suggestion overlines keep a 3:1 contrast with the token under them: one
// palette per band of scores (LINE_COLOURS in heatmap_data.py; heatmap.css has the rules).
// Tone 0 (no class) below 0.5, tone 1 ("ln1", dark lines) from 0.5, tone 2 ("ln2", light) from 0.75.
const LINE_TONE_FROM = [0.5, 0.75];
const LINE_CLS = ["", "ln1", "ln2"];
const LINE_COLOURS = [
  { "Not Supported": "#c2185b", "Insufficient Information": "#7b1fa2", Supported: "#2a7230", "N/A": "#666666", suggestion: "#1565c0" },
  { "Not Supported": "#6a0036", "Insufficient Information": "#3f0f80", Supported: "#0b3d10", "N/A": "#333333", suggestion: "#0b2e6b" },
  { "Not Supported": "#ffdeed", "Insufficient Information": "#efe3ff", Supported: "#c8f5c8", "N/A": "#e8e8e8", suggestion: "#d6ebff" },
];
const OUTCOMES = {
  TP: "flagged, gold hallucinated",
  FP: "flagged, gold not hallucinated",
  FN: "missed, gold hallucinated",
};
const OUTCOME_WORDS = { TP: "true positive", FP: "false positive", FN: "missed" };

function hex2(v) {
  return (v < 16 ? "0" : "") + v.toString(16);
}

function finite(x) {
  return typeof x === "number" && Number.isFinite(x);
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

const colorCache = new Map(); // scores arrive rounded to 4 decimals: at most 10,001 entries

/** Background colour of a token with this score, "#rrggbb" (score_color in Python). */
function scoreColor(score) {
  if (!finite(score)) return UNKNOWN_COLOR;
  const s = Math.min(1, Math.max(0, score));
  let c = colorCache.get(s);
  if (c === undefined) {
    c = computeColor(s);
    if (colorCache.size < 20000) colorCache.set(s, c);
  }
  return c;
}

/** Text colour that stays readable on scoreColor(score) (text_color in Python). */
function textColor(score) {
  return finite(score) && score >= LIGHT_TEXT_FROM ? LIGHT_TEXT : DARK_TEXT;
}

/** The palette of the lines on a token with this score: 0, 1 or 2 (line_tone in Python). */
function lineTone(score) {
  if (!finite(score)) return 0;
  let tone = 0;
  for (const from of LINE_TONE_FROM) if (score >= from) tone += 1;
  return tone;
}

return {
  STOPS, UNKNOWN_COLOR, LIGHT_TEXT_FROM, GOLD, OUTCOMES, OUTCOME_WORDS, LINE_TONE_FROM, LINE_CLS, LINE_COLOURS,
  finite, scoreColor, textColor, lineTone,
};
})();
if (typeof module !== "undefined" && module.exports) module.exports = Colour;
