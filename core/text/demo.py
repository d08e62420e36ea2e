"""Demo data: questions about countries whose answers the `countryinfo` package can verify.

The labelling rule (also in the README) marks entity spans automatically:

- capital questions: every capitalised phrase in the answer that is not the country's own
  name (nor a sentence-opening function word) is an entity; it is *Supported* when it
  names the country's capital (accents and case ignored), otherwise *Not Supported*.
- region questions: every mention of a world region or sub-region known to `countryinfo`
  is an entity; *Supported* when it is the country's region or sub-region (or contains
  it, e.g. "Western Europe" for Europe), otherwise *Not Supported*.
- calling-code questions: every number of 1-4 digits (optionally with "+") is an entity;
  *Supported* when it is one of the country's calling codes, otherwise *Not Supported*.

Everything else in the answer is background. It is a crude rule, but it is checkable,
deterministic, and gives the demo probe real signal to learn from.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.base.types import Span

QUESTION_KINDS = ("capital", "region", "calling_code")
_TEMPLATES = {
    "capital": "What is the capital of {country}?",
    "region": "In which region of the world is {country}?",
    "calling_code": "What is the international calling code of {country}?",
}
_OPENERS = {"The", "A", "An", "It", "Its", "This", "That", "Yes", "No", "In", "On", "As", "However", "I", "My", "Capital",
            "City", "Country", "Region", "Calling", "Code", "International", "Answer", "Sure", "Of", "And", "For"}
_CAPITALISED = re.compile(r"[A-Z][\w'’\-]*(?:\s+(?:de|da|do|of|the|al|el|la)?\s*[A-Z][\w'’\-]*)*")
_NUMBER = re.compile(r"\+?\d{1,4}\b")


@dataclass(frozen=True)
class CountryFacts:
    name: str
    capital: str
    region: str
    subregion: str
    calling_codes: tuple[str, ...]
    alt_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoQuestion:
    country: CountryFacts
    kind: str

    @property
    def prompt(self) -> str:
        return _TEMPLATES[self.kind].format(country=self.country.name)

    @property
    def id(self) -> str:
        return f"demo-{_fold(self.country.name).replace(' ', '-')}-{self.kind}"


def _fold(text: str) -> str:
    """Lower case without accents, for forgiving comparisons."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().strip()


def load_countries(limit: int | None = None) -> list[CountryFacts]:
    """Countries with a capital, a region and a calling code, in a stable order."""
    from countryinfo import all_countries

    facts = []
    for info in all_countries():
        try:
            name, capital, region = info.name(), info.capital(), info.region()
            subregion, codes = info.subregion() or "", info.calling_codes()
            alt = tuple(info.alt_spellings() or ())
        except Exception:  # noqa: BLE001 - a few records lack fields; skip them
            continue
        if name and capital and region and codes:
            facts.append(CountryFacts(str(name).title() if name.islower() else str(name), str(capital), str(region),
                                      str(subregion), tuple(str(c) for c in codes), alt))
    facts.sort(key=lambda f: f.name)
    return facts[:limit] if limit is not None else facts


def demo_questions(n_answers: int) -> list[DemoQuestion]:
    """About n questions: the three kinds for as many countries as needed, spread over the alphabet."""
    countries = load_countries()
    per_country = len(QUESTION_KINDS)
    wanted = max(1, -(-n_answers // per_country))
    step = max(1, len(countries) // wanted)
    chosen = countries[::step][:wanted]
    questions = [DemoQuestion(c, kind) for c in chosen for kind in QUESTION_KINDS]
    return questions[:n_answers]


def _all_regions() -> set[str]:
    regions = set()
    for c in load_countries():
        regions.add(c.region)
        if c.subregion:
            regions.add(c.subregion)
    return {r for r in regions if r}


def label_answer(question: DemoQuestion, answer: str) -> list[Span]:
    """Entity spans of an answer, labelled against the country's facts (rule in the module doc)."""
    facts = question.country
    if question.kind == "capital":
        return _label_capital(facts, answer)
    if question.kind == "region":
        return _label_region(facts, answer)
    return _label_calling_code(facts, answer)


def _label_capital(facts: CountryFacts, answer: str) -> list[Span]:
    own = {_fold(facts.name), *(_fold(a) for a in facts.alt_names)}
    capital = _fold(facts.capital)
    spans = []
    for m in _CAPITALISED.finditer(answer):
        phrase = m.group(0)
        if phrase in _OPENERS or _fold(phrase) in own:
            continue
        label = "Supported" if capital in _fold(phrase) or _fold(phrase) in capital.split(", ") else "Not Supported"
        spans.append(Span(m.start(), m.end(), label))
    return spans


def _label_region(facts: CountryFacts, answer: str) -> list[Span]:
    truth = {_fold(facts.region), _fold(facts.subregion)} - {""}
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []
    for region in sorted(_all_regions(), key=len, reverse=True):  # longest first: "Western Europe" before "Europe"
        for m in re.finditer(re.escape(region), answer):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            folded = _fold(region)
            ok = folded in truth or any(t in folded for t in truth)
            spans.append(Span(m.start(), m.end(), "Supported" if ok else "Not Supported"))
            taken.append((m.start(), m.end()))
    return sorted(spans, key=lambda s: s.start)


def _label_calling_code(facts: CountryFacts, answer: str) -> list[Span]:
    codes = {c.lstrip("+").replace(" ", "") for c in facts.calling_codes}
    spans = []
    for m in _NUMBER.finditer(answer):
        ok = m.group(0).lstrip("+") in codes
        spans.append(Span(m.start(), m.end(), "Supported" if ok else "Not Supported"))
    return spans
