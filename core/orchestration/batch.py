"""Batch generation: a prompts file -> stored answers with per-token data and probe scores.

Runs as a `generate` run in the same worker as the retrain (`core.orchestration.runs`):
progress, ETA, cancel, and it survives the page being closed. Answers are generated in
batches by the batched engine (`core.engine.bulk`); each is stored as soon as it ends, so a
cancel keeps every finished answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.base import settings
from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.base.progress import Cancelled, CancelToken, ProgressFn, report
from core.engine.batched import MAX_BATCH
from core.engine.bulk import GeneratedAnswer, generate_answers
from core.engine.limits import check_prompt_chars
from core.engine.model import EMBEDDED_MODEL_ID, resolve_model_id
from core.orchestration.registry import load_version_or_none
from core.text.interchange import PromptItem, parse_prompt
from core.text.readable import plural
from db.generations import (
    BATCH_MARK,
    answer_in_dataset,
    answered_prompts,
    check_split,
    clean_dataset_name,
    save_generated,
)
from db.models import RunKind, RunStatus
from db.train_runs import get_run
from db.users import user_by_id

MAX_PROMPTS = 10_000
MAX_PROMPT_CHARS = 20_000


class BadPromptsError(UserError):
    """Some lines were bad, so no batch starts; `.problems` lists every (line, reason)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        line, reason = problems[0]
        super().__init__(
            f"{len(problems)} bad line{'s' if len(problems) > 1 else ''}; nothing was started "
            f"(first: line {line}: {reason})"
        )


def pasted_name(text: str) -> str:
    """A file name for pasted prompts: JSONL when every non-blank line looks like a JSON object."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "pasted.jsonl" if lines and all(line.startswith("{") for line in lines) else "pasted.txt"


def parse_prompts(data: bytes | str, filename: str = "prompts.jsonl") -> list[PromptItem]:
    """JSONL (`{"prompt": ...}` or `{"conversation": [...]}` per line) or plain text (one prompt
    per non-blank line; any file not ending in .jsonl/.json). Every bad line is reported."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UserError(f"{filename}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    else:
        text = data
    as_json = filename.lower().endswith((".jsonl", ".json", ".ndjson"))
    items: list[PromptItem] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if len(line) > MAX_PROMPT_CHARS:
            problems.append((number, f"longer than {MAX_PROMPT_CHARS} characters"))
            continue
        if as_json:
            try:
                items.append(parse_prompt(json.loads(line), number))
            except json.JSONDecodeError as exc:
                problems.append((number, f"invalid JSON ({exc.msg} at column {exc.colno})"))
            except UserError as exc:
                problems.append((number, str(exc).removeprefix(f"line {number}: ")))
        else:
            try:
                items.append(parse_prompt({"prompt": line.strip()}, number))
            except UserError as exc:
                problems.append((number, str(exc).removeprefix(f"line {number}: ")))
    if problems:
        raise BadPromptsError(problems)
    if not items:
        raise UserError(f"{filename}: no prompts found")
    if len(items) > MAX_PROMPTS:
        raise UserError(f"{filename}: {len(items)} prompts; at most {MAX_PROMPTS} per batch")
    return items


@dataclass
class BatchParams:
    """What a `generate` run does; stored on its run row as JSON (the decoding settings flat beside
    the rest, as they always were). Checked once, by `start_batch`, when the run is created:
    the worker and the Ray replicas read back what was checked."""

    prompts: list[list[dict[str, str]]]
    dataset: str
    split: str = "train"
    model: str | None = None
    decoding: DecodingSettings = field(default_factory=lambda: DecodingSettings(max_new_tokens=128))
    score: bool = True  # with the active probe, when one fits the model
    batch_size: int | None = None  # None: as many as the KV-cache budget holds
    # A resumed batch: each prompt's position in the first run's file (its seed is S + n), and that run's id.
    indices: list[int] | None = None
    resumes: int | None = None

    def prompt_number(self, position: int) -> int:
        """Prompt `position`'s n in the whole batch (its position in the first run's file)."""
        return int(self.indices[position]) if self.indices is not None else position

    def validate(self) -> None:
        """The run's own rules (its decoding settings checked themselves when they were made)."""
        if not self.prompts:
            raise UserError("no prompts")
        for n, messages in enumerate(self.prompts):  # tokens are checked by the worker, before any answer
            check_prompt_chars(messages, f"prompt {n + 1}")
        self.dataset = clean_dataset_name(self.dataset)
        self.split = check_split(self.split)
        if self.batch_size is not None and not 1 <= int(self.batch_size) <= MAX_BATCH:
            raise UserError(f"batch size must be between 1 and {MAX_BATCH}")
        if self.indices is not None and len(self.indices) != len(self.prompts):
            raise UserError("a resumed batch needs one prompt number per prompt")

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "decoding"}
        return {**data, **self.decoding.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchParams:
        """What `to_dict` wrote (a run row's params), read back as it was checked at creation."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "decoding"}
        return cls(**fields, decoding=DecodingSettings.from_dict(data, max_new_tokens=128))


def check_model(model: str | None) -> str:
    """The resolved model id if it can be loaded without a download, else one clear UserError.

    Checked before a run row is written, so a typo in the model field changes nothing
    instead of starting a worker that fails after its start-up."""
    resolved = resolve_model_id(model)
    if resolved == EMBEDDED_MODEL_ID or settings.allow_downloads():
        return resolved
    folder = Path(resolved).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise UserError(f"model folder {resolved} has no config.json: not a Hugging Face model folder")
        return resolved
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(resolved, "config.json")
    except Exception:
        cached = None
    if not isinstance(cached, str):
        raise UserError(
            f"unknown model '{resolved}': not the embedded model, not a local folder, "
            "and not in the local Hugging Face cache (nothing is downloaded)"
        )
    return resolved


def resume_params(database, run_id: int) -> BatchParams:
    """The params of a batch that answers only the prompts of batch run `run_id` (and of the
    runs it resumed) that have no stored answer yet: each keeps its number, so its seed and its
    marker are those of the first run. One clear UserError when there is nothing to resume."""
    with database.sessions() as session:
        run = get_run(session, run_id)
        if run.kind != RunKind.GENERATE:
            raise UserError(f"run {run_id} is a {run.kind} run, not a batch")
        if run.status not in (RunStatus.CANCELLED, RunStatus.FAILED):
            raise UserError(f"batch run {run_id} is {run.status}: only a cancelled or failed batch can be resumed")
        params = BatchParams.from_dict(dict(run.params or {}))
        first = params.resumes or run.id
        answered = answered_prompts(session, params.dataset, first)
    left = [n for n in range(len(params.prompts)) if params.prompt_number(n) not in answered]
    if not left:
        raise UserError(f"every prompt of batch run {run_id} has a stored answer: nothing to resume")
    return replace(
        params,
        prompts=[params.prompts[n] for n in left],
        indices=[params.prompt_number(n) for n in left],
        resumes=first,
    )


class AnswerWriter:
    """Stores one batch run's finished answers, each once: an answer already in the dataset (a
    retried shard, greedy decoding repeating itself) is not stored again, only counted. Each
    answer is marked with its batch (the first run's id) and prompt number (`extra["batch"]`),
    so a resumed batch knows which prompts are answered."""

    def __init__(
        self,
        database,
        params: BatchParams,
        probe_version: int | None,
        created_by: int | None,
        run_id: int | None = None,
    ) -> None:
        self.database, self.params, self.probe_version, self.created_by = database, params, probe_version, created_by
        self.batch = params.resumes or run_id
        self.stored: list[int] = []
        self.skipped: list[tuple[int, str]] = []
        self.repeated = 0
        self.tokens = 0

    def store(self, answers: list[GeneratedAnswer]) -> None:
        """Store answers in one transaction; one unstorable answer (model output is untrusted: a
        NUL character, say) is skipped and reported, and does not cost the others."""
        with self.database.sessions() as session, session.begin():
            user = user_by_id(session, self.created_by)
            for answer in answers:
                if self.batch is not None:
                    answer.generation.extra[BATCH_MARK] = {"run": self.batch, "prompt": answer.index}
                try:
                    with session.begin_nested():
                        known = answer_in_dataset(session, self.params.dataset, answer.generation.conversation)
                        row = save_generated(
                            session,
                            self.params.dataset,
                            answer.generation,
                            answer.trace,
                            user=user,
                            probe_version=self.probe_version,
                            split=self.params.split,
                        )
                except UserError as exc:
                    self.skipped.append((answer.index + 1, str(exc)))
                    continue
                self.stored.append(row.id)
                self.repeated += known
                self.tokens += len(answer.trace.token_ids)

    def notes(self) -> str:
        return (f" · {self.repeated} already in the dataset" if self.repeated else "") + (
            f" · {len(self.skipped)} skipped" if self.skipped else ""
        )

    def result(self) -> dict[str, Any]:
        return {
            "answers": len(self.stored),
            "tokens": self.tokens,
            "generation_ids": self.stored,
            "probe_version": self.probe_version,
            "skipped": sorted(self.skipped),
            "repeated": self.repeated,
        }


def run_batch(
    database,
    lm,
    params: BatchParams,
    *,
    created_by: int | None = None,
    run_id: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Answer every prompt in batches, storing each answer (tokens, log-probs, entropies, probe
    scores) as soon as it ends; answers cut short by a cancel are not stored."""
    probe = load_version_or_none(database, lm) if params.score else None
    writer = AnswerWriter(database, params, probe.probe_version if probe else None, created_by, run_id)

    def with_notes(stage: str, done: int, total: int, message: str = "") -> None:
        report(progress, stage, done, total, message + writer.notes())

    answers = generate_answers(
        lm,
        params.prompts,
        params.decoding,
        probe=probe,
        batch_size=params.batch_size,
        progress=with_notes,
        cancel=cancel,
        indices=params.indices,
    )
    try:
        for answer in answers:
            writer.store([answer])
    except Cancelled:
        pass  # said below, with what was kept
    if cancel is not None and cancel.cancelled:
        raise Cancelled(kept_message(len(writer.stored), len(params.prompts)))
    return writer.result()


def kept_message(kept: int, prompts: int) -> str:
    """What a cancelled batch says: how many answers it kept, and what a resume would answer."""
    return f"cancelled; {plural(kept, 'answer')} kept, {plural(prompts - kept, 'prompt')} left to resume"
