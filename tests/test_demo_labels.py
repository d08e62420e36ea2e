"""The demo's labelling rule, checked against every country `countryinfo` knows."""

from __future__ import annotations

import pytest

from core.text.demo import DemoQuestion, label_answer, load_countries

COUNTRIES = load_countries()


def _labelled(country, kind: str, answer: str) -> list[tuple[str, str]]:
    return [(answer[s.start : s.end], s.label) for s in label_answer(DemoQuestion(country, kind), answer)]


def _named(name: str):
    return next(c for c in COUNTRIES if c.name == name)


def test_every_country_is_loaded_with_its_facts():
    assert len(COUNTRIES) > 200
    assert all(c.capitals and c.region and c.calling_codes for c in COUNTRIES)


@pytest.mark.parametrize("country", COUNTRIES, ids=lambda c: c.name)
def test_no_part_of_a_countrys_own_name_is_ever_an_entity(country):
    # capital: the right one is supported, a wrong one is not, the country's name is neither
    answer = f"The capital of {country.name} is Atlantis, not {country.capitals[0]}."
    assert _labelled(country, "capital", answer) == [("Atlantis", "Not Supported"), (country.capitals[0], "Supported")]
    for alt in country.names[1:]:
        assert _labelled(country, "capital", f"{alt} has its capital in {country.capitals[0]}.") == [
            (country.capitals[0], "Supported")
        ], alt
    # region: the country's region and sub-region are supported, and only they are entities
    for region in {country.region, country.subregion} - {""}:
        assert _labelled(country, "region", f"{country.name} is in {region}.") == [(region, "Supported")]
    # calling code: each of its codes is supported
    for code in (c.lstrip("+") for c in country.calling_codes):
        assert _labelled(country, "calling_code", f"The calling code of {country.name} is +{code}.") == [
            (f"+{code}", "Supported")
        ]


def test_the_reported_multi_word_names():
    bosnia = _named("Bosnia and Herzegovina")
    assert _labelled(
        bosnia,
        "capital",
        "The capital of Bosnia and Herzegovina is Sarajevo. "
        "Herzegovina's largest city is Mostar, and Bosnia's is Sarajevo.",
    ) == [("Sarajevo", "Supported"), ("Mostar", "Not Supported"), ("Sarajevo", "Supported")]
    congo = _named("Democratic Republic of the Congo")
    assert _labelled(
        congo,
        "capital",
        "The capital of the Democratic Republic of Congo (the DR Congo) is "
        "Kinshasa; the Republic's second city is Lubumbashi.",
    ) == [("Kinshasa", "Supported"), ("Lubumbashi", "Not Supported")]
    australia = _named("Australia")
    assert _labelled(australia, "capital", "The capital of Australia is Sydney.") == [("Sydney", "Not Supported")]
    assert _labelled(australia, "calling_code", "Australia's calling code is +61.") == [("+61", "Supported")]
    south_africa = _named("South Africa")
    assert _labelled(south_africa, "region", "South Africa is in Western Europe.") == [
        ("Western Europe", "Not Supported")
    ]
