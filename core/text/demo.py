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

from core.base.types import NOT_SUPPORTED, SUPPORTED, Span

QUESTION_KINDS = ("capital", "region", "calling_code")
_TEMPLATES = {
    "capital": "What is the capital of {country}?",
    "region": "In which region of the world is {country}?",
    "calling_code": "What is the international calling code of {country}?",
}
_OPENERS = {
    "The",
    "A",
    "An",
    "It",
    "Its",
    "This",
    "That",
    "Yes",
    "No",
    "In",
    "On",
    "As",
    "However",
    "I",
    "My",
    "Capital",
    "City",
    "Country",
    "Region",
    "Calling",
    "Code",
    "International",
    "Answer",
    "Sure",
    "Of",
    "And",
    "For",
}
_CAPITALISED = re.compile(r"[A-Z][\w'’\-]*(?:\s+(?:de|da|do|of|the|al|el|la)?\s*[A-Z][\w'’\-]*)*")
_NUMBER = re.compile(r"\+?\d{1,4}(?:-\d{3,4})?\b")  # "+44", and "+1-876" (Jamaica) as one code


@dataclass(frozen=True)
class CountryFacts:
    name: str
    capital: str  # several capitals are joined with " / "
    region: str
    subregion: str
    calling_codes: tuple[str, ...]
    alt_names: tuple[str, ...] = ()

    @property
    def capitals(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.capital.split("/") if c.strip())

    @property
    def names(self) -> tuple[str, ...]:
        """The country's own names; short all-capital codes ("BIH", "AND") are left out."""
        return (self.name, *(a for a in self.alt_names if not _is_code(a)))


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
        except Exception:
            continue
        capitals = [str(c) for c in capital] if isinstance(capital, (list, tuple)) else [str(capital)]
        calling = tuple(str(c).strip() for c in (codes or ()) if str(c).strip())
        if name and any(capitals) and region and calling:
            facts.append(
                CountryFacts(
                    str(name).title() if name.islower() else str(name),
                    " / ".join(c for c in capitals if c),
                    str(region),
                    str(subregion),
                    calling,
                    tuple(str(a) for a in alt),
                )
            )
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


def _is_code(text: str) -> bool:
    return len(text) <= 3 and text.isupper()


def _fold_with_index(text: str) -> tuple[str, list[int]]:
    """`_fold` of the text, plus for each folded character the index of its original one."""
    folded: list[str] = []
    index: list[int] = []
    for i, char in enumerate(text):
        piece = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)).lower()
        folded.append(piece)
        index.extend([i] * len(piece))
    return "".join(folded), index


def _occurrences(answer: str, phrases: tuple[str, ...] | list[str]) -> list[tuple[int, int]]:
    """Where any phrase occurs as whole words (case and accents ignored), longest first, no overlaps."""
    folded, index = _fold_with_index(answer)
    found: list[tuple[int, int]] = []
    for phrase in sorted({_fold(p) for p in phrases if p.strip()}, key=len, reverse=True):
        for m in re.finditer(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", folded):
            start, end = index[m.start()], index[m.end() - 1] + 1
            if not any(start < e and s < end for s, e in found):
                found.append((start, end))
    return sorted(found)


def _capital_variants(capital: str) -> list[str]:
    """ "Saint John's" is also written "St. John's" and "St John's", and back."""
    variants = [capital]
    for long, short in (("Saint ", "St. "), ("Saint ", "St ")):
        if capital.startswith(long):
            variants.append(short + capital[len(long) :])
        if capital.startswith(short):
            variants.append(long + capital[len(short) :])
    return variants


def _words(text: str) -> list[str]:
    return [w.removesuffix("'s").removesuffix("’s") for w in re.findall(r"[\w'’]+", _fold(text))]


_CONNECTORS = {"de", "da", "do", "of", "the", "al", "el", "la", "and"}


def _names_the_country(answer: str, start: int, end: int, names: list[tuple[int, int]]) -> bool:
    """A capital found inside a longer mention of the country ("Bissau" in "Guinea-Bissau"), or
    equal to one right after "of" ("the capital of Singapore"), is the country, not a claim."""
    for s, e in names:
        if s <= start and end <= e and (e - s > end - start or re.search(r"\bof\s+$", answer[:start])):
            return True
    return False


def _label_capital(facts: CountryFacts, answer: str) -> list[Span]:
    names = _occurrences(answer, facts.names)
    name_words = {w for n in facts.names for w in _words(n)}
    capitals = [
        (s, e)
        for s, e in _occurrences(answer, [v for c in facts.capitals for v in _capital_variants(c)])
        if not _names_the_country(answer, s, e, names)
    ]
    spans = [Span(s, e, SUPPORTED) for s, e in capitals]
    for m in _CAPITALISED.finditer(answer):
        phrase = m.group(0)
        if phrase in _OPENERS or _is_code(phrase) and phrase in facts.alt_names:
            continue
        if any(m.start() < e and s < m.end() for s, e in names + capitals):
            continue  # the country's own name (every part of it), or the capital found above
        if all(w in name_words or w in _CONNECTORS for w in _words(phrase)):
            continue  # "Herzegovina", "Republic": pieces of the country's name written another way
        spans.append(Span(m.start(), m.end(), NOT_SUPPORTED))
    return sorted(spans, key=lambda s: s.start)


def _label_region(facts: CountryFacts, answer: str) -> list[Span]:
    truth = {_fold(facts.region), _fold(facts.subregion)} - {""}
    names = _occurrences(answer, facts.names)
    spans: list[Span] = []
    for start, end in _occurrences(answer, sorted(_all_regions())):  # longest first: "Western Europe", not "Europe"
        if any(s <= start and end <= e for s, e in names):
            continue  # "Africa" in "South Africa" is the country's name, not a claim
        folded = _fold(answer[start:end])
        ok = folded in truth or any(t in folded for t in truth)
        spans.append(Span(start, end, SUPPORTED if ok else NOT_SUPPORTED))
    return spans


def _label_calling_code(facts: CountryFacts, answer: str) -> list[Span]:
    codes = {c.lstrip("+").replace(" ", "") for c in facts.calling_codes}
    spans = []
    for m in _NUMBER.finditer(answer):
        ok = m.group(0).lstrip("+") in codes
        spans.append(Span(m.start(), m.end(), SUPPORTED if ok else NOT_SUPPORTED))
    return spans
