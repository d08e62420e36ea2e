"""One `DecodingSettings`: checked once when made, held whole by every producer of answers.

The batch run's params, bulk generation, the engine's requests, the stream, live sessions and
the CLI all hold the same type; a batch run's own rules are checked once, when the run is
created (`start_batch`), and the worker reads its row back without checking again.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.base.decoding import MAX_NEW_TOKENS, DecodingSettings
from core.base.errors import UserError
from core.engine.batched import GenerationRequest
from core.engine.bulk import bulk_requests
from core.engine.live import LiveGeneration
from core.orchestration.batch import BatchParams
from core.orchestration.cli import main

Q = [{"role": "user", "content": "Who founded Lviv?"}]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"max_new_tokens": 0}, "max new tokens must be between 1 and 4096"),
        ({"max_new_tokens": MAX_NEW_TOKENS + 1}, "max new tokens must be between 1 and 4096"),
        ({"temperature": -0.1}, "temperature must be between 0 and 5"),
        ({"temperature": 5.5}, "temperature must be between 0 and 5"),
        ({"top_p": 0}, r"top-p must be in \(0, 1\]"),
        ({"top_p": 1.01}, r"top-p must be in \(0, 1\]"),
        ({"max_new_tokens": "many"}, "max new tokens must be a number"),
        ({"seed": True}, "seed must be a number"),
    ],
)
def test_bad_settings_are_refused_when_made(bad, message):
    with pytest.raises(UserError, match=message):
        DecodingSettings(**bad)


def test_settings_are_normalised_frozen_and_round_trip():
    s = DecodingSettings(max_new_tokens=12.0, temperature=1, top_p="0.9", seed=3)
    assert (s.max_new_tokens, s.temperature, s.top_p, s.seed) == (12, 1.0, 0.9, 3)
    assert type(s.max_new_tokens) is int and type(s.temperature) is float
    assert not s.greedy and DecodingSettings().greedy and DecodingSettings(seed=None).seed is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.temperature = 2.0  # type: ignore[misc]
    assert DecodingSettings.from_dict({**s.to_dict(), "other": 1}) == s
    assert DecodingSettings.from_dict({}, max_new_tokens=128) == DecodingSettings(max_new_tokens=128)


def test_prompt_n_of_a_bulk_job_samples_with_seed_plus_n():
    s = DecodingSettings(max_new_tokens=5, temperature=0.7, seed=10)
    assert [s.for_prompt(n).seed for n in range(3)] == [10, 11, 12]
    assert DecodingSettings(seed=None).for_prompt(4).seed is None
    requests = list(bulk_requests([Q, Q, Q], s, indices=[7, 8, 9]))
    assert [r.decoding for r in requests] == [s.for_prompt(n) for n in (7, 8, 9)]
    assert [r.tag for r in requests] == [7, 8, 9]


def test_requests_and_live_sessions_hold_the_settings_whole():
    s = DecodingSettings(max_new_tokens=9, temperature=0.3, top_p=0.8, seed=2)
    assert GenerationRequest(Q, s).decoding is s
    assert LiveGeneration(None, Q, s).decoding is s  # type: ignore[arg-type]
    for cls in (GenerationRequest, LiveGeneration, BatchParams):
        names = {f.name for f in dataclasses.fields(cls)}
        assert "decoding" in names and not names & {"max_new_tokens", "temperature", "top_p", "seed"}, cls


def test_batch_params_store_flat_and_are_checked_once_at_creation():
    params = BatchParams(prompts=[Q], dataset="d", decoding=DecodingSettings(max_new_tokens=7, temperature=0.5))
    row = json.loads(json.dumps(params.to_dict()))  # what the run row stores
    assert row["max_new_tokens"] == 7 and row["temperature"] == 0.5 and "decoding" not in row
    assert BatchParams.from_dict(row) == params
    assert BatchParams(prompts=[Q], dataset="d").decoding.max_new_tokens == 128  # a batch's default
    # The worker reads back what was checked at creation: no second check of the run's rules.
    unchecked = BatchParams.from_dict({"prompts": [], "dataset": "d"})
    assert unchecked.prompts == []
    with pytest.raises(UserError, match="no prompts"):
        unchecked.validate()
    # Decoding settings can never be read back broken: they check themselves.
    with pytest.raises(UserError, match="top-p"):
        BatchParams.from_dict({**row, "top_p": 0})


def test_cli_generate_refuses_bad_settings_before_loading_anything(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi"}) + "\n")
    out = tmp_path / "out.jsonl"
    code = main(["--quiet", "generate", "--prompts", str(prompts), "--out", str(out), "--temperature", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and "temperature must be between 0 and 5" in err and not out.exists()
    assert len([line for line in err.splitlines() if line.strip()]) == 1
