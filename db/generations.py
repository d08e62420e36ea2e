"""Datasets, models and generations: the rows every other table hangs off.

A generation is stored once per dataset: its identity is the sha256 of the NFC
conversation (`content_hash`), so re-importing a file or generating the same answer
twice does not create twins. Spans are *not* stored here; they live in annotation sets
(db/annotations.py), one per annotator plus the gold set.

Functions take a Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from sqlalchemy import delete, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.base.types import LABEL_VALUES, TokenTrace
from core.base.types import Generation as CoreGeneration
from core.text.tokens import nfc, nfc_trace
from db.arrays import (
    pack_floats,
    pack_ints,
    pack_offsets,
    unpack_floats,
    unpack_ints,
    unpack_offsets,
)
from db.events import log_event
from db.models import (
    GOLD_OWNER,
    AnnotationSet,
    Dataset,
    Event,
    Generation,
    ModelRecord,
    SpanRow,
    User,
)
from db.predictions import store_scores

MAX_DATASET_NAME = 200
MAX_MODEL_NAME = 500
MAX_EXTERNAL_ID = 200
MAX_SPLIT = 50
MAX_SOURCE = 20
INT32_MAX = 2**31 - 1

# Record keys that have their own home (a column, the token arrays, the annotation sets):
# keeping them in `extra` too would give an export two competing values.
RESERVED_EXTRA_KEYS = frozenset({"tokens", "split", "annotations_by", "comments_by", "skips_by"})

HALLUCINATED_LABELS = tuple(label for label, value in LABEL_VALUES.items() if value == 1)


# --- identity ---------------------------------------------------------------------------


def _canonical_messages(conversation: list[dict]) -> list[dict[str, str]]:
    return [{"role": nfc(m["role"]), "content": nfc(m["content"])} for m in conversation]


def content_hash(conversation: list[dict]) -> str:
    """sha256 of the canonical JSON of the NFC conversation (roles and contents only).

    Composed and decomposed spellings of the same text hash alike, and key order or
    extra message fields do not matter: the hash answers "is this the same answer?".
    """
    canonical = json.dumps(_canonical_messages(conversation), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- what the databases can hold ----------------------------------------------------------


def _check_string(value: str, what: str) -> None:
    """PostgreSQL refuses U+0000 in text, and no driver can encode a lone surrogate.

    Refusing both on every backend keeps SQLite and PostgreSQL accepting the same files.
    """
    if "\x00" in value:
        raise UserError(f"{what} contains a NUL character (U+0000), which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{what} contains an unpaired surrogate (invalid Unicode)") from None


def _check_json(value: Any, what: str) -> None:
    if isinstance(value, str):
        _check_string(value, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UserError(f"{what} has a non-string key {key!r}")
            _check_string(key, f"{what} key")
            _check_json(item, f"{what} '{key}'")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_json(item, what)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{what} contains NaN or Infinity, which JSON cannot hold")
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise UserError(f"{what} holds a {type(value).__name__}, which JSON cannot hold")


def _check_length(value: str | None, limit: int, what: str) -> None:
    if value is not None and len(value) > limit:
        raise UserError(f"{what} is longer than {limit} characters")


def check_split(split: Any) -> str:
    """A split is a short non-empty name (train, test, validation, ...)."""
    if not isinstance(split, str) or not split.strip():
        raise UserError('"split" must be a non-empty string')
    split = split.strip()
    _check_length(split, MAX_SPLIT, '"split"')
    _check_string(split, '"split"')
    return split


def check_trace(trace: TokenTrace, completion: str) -> None:
    """Token arrays must fit int32 and point inside the completion (code points)."""
    length = len(completion)
    for start, end in trace.offsets:
        if not 0 <= start <= end <= length:
            raise UserError(f'"tokens": offset ({start}, {end}) outside the completion (length {length})')
    for token_id in trace.token_ids:
        if not 0 <= token_id <= INT32_MAX:
            raise UserError(f'"tokens": token id {token_id} outside 0..{INT32_MAX}')
    _check_json(list(trace.texts), '"tokens" texts')


def check_storable(gen: CoreGeneration, trace: TokenTrace | None = None) -> None:
    """Everything that would only fail at INSERT time, raised now as a UserError."""
    if not gen.conversation:
        raise UserError("a generation needs at least one message")
    _check_json(gen.conversation, '"conversation"')
    for span in gen.spans:
        if span.note is not None:
            _check_string(span.note, "a span note")
    if gen.id is not None:
        _check_length(gen.id, MAX_EXTERNAL_ID, '"id"')
        _check_string(gen.id, '"id"')
    if gen.model is not None:
        _check_length(gen.model, MAX_MODEL_NAME, '"model"')
        _check_string(gen.model, '"model"')
    _check_json(gen.extra, "extra field")
    if trace is not None:
        check_trace(nfc_trace(trace), nfc(gen.completion))


# --- datasets and models ------------------------------------------------------------------


def clean_dataset_name(name: Any) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(cleaned) <= MAX_DATASET_NAME:
        raise UserError(f"dataset name must be 1 to {MAX_DATASET_NAME} characters")
    _check_string(cleaned, "dataset name")
    return cleaned


def find_dataset(session: Session, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.name == clean_dataset_name(name)))


def get_dataset(session: Session, name: str) -> Dataset:
    dataset = find_dataset(session, name)
    if dataset is None:
        raise UserError(f"unknown dataset '{name.strip() if isinstance(name, str) else name}'")
    return dataset


def get_or_create_dataset(session: Session, name: str) -> Dataset:
    """The dataset called `name` (stripped), created if missing; a rival creating it first is fine."""
    cleaned = clean_dataset_name(name)
    found = find_dataset(session, cleaned)
    if found is not None:
        return found
    dataset = Dataset(name=cleaned)
    try:
        with session.begin_nested():  # a unique violation must not spoil the caller's transaction
            session.add(dataset)
    except IntegrityError:
        return get_dataset(session, cleaned)
    return dataset


def get_or_create_model(
    session: Session,
    name: str,
    *,
    tokenizer_hash: str | None = None,
    num_layers: int | None = None,
    hidden_size: int | None = None,
) -> ModelRecord:
    """The model row for `name`; metadata given here fills fields still unknown, never overwrites."""
    cleaned = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(cleaned) <= MAX_MODEL_NAME:
        raise UserError(f"model name must be 1 to {MAX_MODEL_NAME} characters")
    _check_string(cleaned, "model name")
    model = session.scalar(select(ModelRecord).where(ModelRecord.name == cleaned))
    if model is None:
        model = ModelRecord(name=cleaned)
        try:
            with session.begin_nested():
                session.add(model)
        except IntegrityError:
            model = session.scalar(select(ModelRecord).where(ModelRecord.name == cleaned))
            assert model is not None, "the insert lost to a concurrent one, so the name's row exists"
    for field, value in (("tokenizer_hash", tokenizer_hash), ("num_layers", num_layers), ("hidden_size", hidden_size)):
        if value is not None and getattr(model, field) is None:
            setattr(model, field, value)
    return model


# --- generations --------------------------------------------------------------------------


def build_generation(
    dataset: Dataset,
    gen: CoreGeneration,
    *,
    split: str,
    source: str,
    trace: TokenTrace | None,
    created_by: User | None,
    model: ModelRecord | None,
    digest: str | None = None,
) -> Generation:
    """A new, unsaved row (no duplicate check): shared by `add_generation` and bulk import."""
    conversation = _canonical_messages(gen.conversation)
    row = Generation(
        external_id=gen.id,
        split=split,
        conversation=conversation,
        completion=conversation[-1]["content"],
        model=model,
        source=source,
        content_hash=digest or content_hash(conversation),
        extra={k: v for k, v in gen.extra.items() if k not in RESERVED_EXTRA_KEYS},
        created_by=created_by.id if created_by is not None else None,
    )
    # By id when we can: the relationship would also append the row to
    # `dataset.generations`, keeping every row of a bulk import alive in memory.
    if dataset.id is not None:
        row.dataset_id = dataset.id
    else:
        row.dataset = dataset
    if trace is not None:
        set_trace(row, trace)
    return row


def set_trace(row: Generation, trace: TokenTrace) -> None:
    """Store the per-token arrays on a row (new, or imported without tokens and scored later),
    their offsets counted on the stored NFC text (`nfc_trace`)."""
    trace = nfc_trace(trace)
    check_trace(trace, row.completion)
    row.token_ids = pack_ints(trace.token_ids)
    row.token_offsets = pack_offsets(trace.offsets)
    row.token_texts = list(trace.texts)
    row.logprobs = pack_floats(trace.logprobs)
    row.entropies = pack_floats(trace.entropies)


def add_generation(
    session: Session,
    dataset: Dataset,
    gen: CoreGeneration,
    *,
    split: str = "train",
    source: str = "imported",
    trace: TokenTrace | None = None,
    created_by: User | None = None,
) -> Generation | None:
    """Store one generation (conversation NFC-normalised); None if the dataset already has it.

    `gen.spans` are ignored: save them as an annotation set. Per-token scores in `trace`
    are not stored either; they belong to a probe version (the predictions table).
    The row is flushed, so its `id` is set.
    """
    split = check_split(split)
    if not isinstance(source, str) or not 1 <= len(source) <= MAX_SOURCE:
        raise UserError(f"source must be 1 to {MAX_SOURCE} characters")
    check_storable(gen, trace)
    digest = content_hash(gen.conversation)
    if dataset.id is not None and _hash_exists(session, dataset.id, digest):
        return None
    model = get_or_create_model(session, gen.model) if gen.model else None
    row = build_generation(
        dataset, gen, split=split, source=source, trace=trace, created_by=created_by, model=model, digest=digest
    )
    try:
        with session.begin_nested():  # a concurrent insert of the same answer loses here, quietly
            session.add(row)
    except IntegrityError:
        return None
    return row


def _hash_exists(session: Session, dataset_id: int, digest: str) -> bool:
    query = select(Generation.id).where(Generation.dataset_id == dataset_id, Generation.content_hash == digest)
    return session.scalar(query) is not None


def answer_in_dataset(session: Session, dataset_name: str, conversation: list[dict]) -> bool:
    """Whether this exact conversation is already stored in the named dataset (False if no such dataset)."""
    query = (
        select(Generation.id)
        .join(Dataset)
        .where(Dataset.name == dataset_name, Generation.content_hash == content_hash(conversation))
        .limit(1)
    )
    return session.scalar(query) is not None


#: `extra` key of an answer a batch run stored: {"run": the batch's first run id, "prompt": its number}.
BATCH_MARK = "batch"


def answered_prompts(session: Session, dataset_name: str, batch_run: int) -> set[int]:
    """The prompt numbers of batch `batch_run` (its first run's id) with an answer stored in the dataset."""
    query = select(Generation.extra).join(Dataset).where(Dataset.name == dataset_name)
    found: set[int] = set()
    for extra in session.scalars(query):
        mark = (extra or {}).get(BATCH_MARK)
        if isinstance(mark, dict) and mark.get("run") == batch_run and isinstance(mark.get("prompt"), int):
            found.add(mark["prompt"])
    return found


def existing_hashes(session: Session, dataset_id: int, digests: list[str]) -> set[str]:
    """Which of `digests` the dataset already holds (asked in chunks: IN lists stay small)."""
    found: set[str] = set()
    for i in range(0, len(digests), 500):
        chunk = digests[i : i + 500]
        query = select(Generation.content_hash).where(
            Generation.dataset_id == dataset_id, Generation.content_hash.in_(chunk)
        )
        found.update(session.scalars(query))
    return found


def to_core(row: Generation) -> CoreGeneration:
    """The plain Generation of a row, without spans (those are per annotation set)."""
    return CoreGeneration(
        conversation=[{"role": m["role"], "content": m["content"]} for m in row.conversation],
        spans=[],
        id=row.external_id,
        model=row.model.name if row.model is not None else None,
        extra=dict(row.extra or {}),
    )


def trace_of(row: Generation) -> TokenTrace | None:
    """The stored per-token arrays, or None for a generation imported without tokens."""
    if row.token_ids is None or row.token_offsets is None:
        return None
    ids = unpack_ints(row.token_ids) or []
    offsets = unpack_offsets(row.token_offsets) or []
    texts = list(row.token_texts) if row.token_texts is not None else [row.completion[s:e] for s, e in offsets]
    nan = [float("nan")] * len(ids)
    logprobs = unpack_floats(row.logprobs) if row.logprobs is not None else nan
    entropies = unpack_floats(row.entropies) if row.entropies is not None else list(nan)
    return TokenTrace(ids, texts, offsets, logprobs, entropies)


def find_generation(session: Session, generation_id: int) -> Generation | None:
    """The row with this id, or None (deleted meanwhile)."""
    return session.get(Generation, generation_id)


def generation_ids(session: Session) -> list[int]:
    """Every stored answer's id, oldest first."""
    return list(session.scalars(select(Generation.id).order_by(Generation.id)))


def get_generation(session: Session, generation_id: int) -> Generation:
    """The row with this id; UserError if it does not exist (it may have been deleted)."""
    row = session.get(Generation, generation_id)
    if row is None:
        raise UserError(f"unknown generation {generation_id}")
    return row


# --- dataset overview and deletion -------------------------------------------------------


def _counts_by_dataset(session: Session, query) -> dict[int, int]:
    return {dataset_id: count for dataset_id, count in session.execute(query)}


def list_datasets(session: Session) -> list[dict[str, Any]]:
    """Every dataset with its counts, by name.

    - answers: generations;
    - labelled_by_anyone: generations with at least one annotator (non-gold) set, even an
      empty one: saving "nothing to mark" is a labelling decision too;
    - gold: generations with a gold set;
    - hallucinated_spans: gold spans whose label counts as hallucinated (value 1).
    """
    gen_id = Generation.id
    answers = _counts_by_dataset(
        session, select(Generation.dataset_id, func.count(gen_id)).group_by(Generation.dataset_id)
    )

    def sets_query(gold: bool):
        owner_test = AnnotationSet.owner == GOLD_OWNER if gold else AnnotationSet.owner != GOLD_OWNER
        return (
            select(Generation.dataset_id, func.count(func.distinct(AnnotationSet.generation_id)))
            .join(AnnotationSet, AnnotationSet.generation_id == gen_id)
            .where(owner_test)
            .group_by(Generation.dataset_id)
        )

    labelled = _counts_by_dataset(session, sets_query(gold=False))
    gold = _counts_by_dataset(session, sets_query(gold=True))
    hallucinated = _counts_by_dataset(
        session,
        select(Generation.dataset_id, func.count(SpanRow.id))
        .join(AnnotationSet, AnnotationSet.generation_id == gen_id)
        .join(SpanRow, SpanRow.set_id == AnnotationSet.id)
        .where(AnnotationSet.owner == GOLD_OWNER, SpanRow.label.in_(HALLUCINATED_LABELS))
        .group_by(Generation.dataset_id),
    )
    return [
        {
            "id": ds.id,
            "name": ds.name,
            "created_at": ds.created_at,
            "answers": answers.get(ds.id, 0),
            "labelled_by_anyone": labelled.get(ds.id, 0),
            "gold": gold.get(ds.id, 0),
            "hallucinated_spans": hallucinated.get(ds.id, 0),
        }
        for ds in session.scalars(select(Dataset).order_by(Dataset.name))
    ]


def _dataset_contents(session: Session, dataset_id: int) -> dict[str, int]:
    in_dataset = select(Generation.id).where(Generation.dataset_id == dataset_id).scalar_subquery()
    generations = session.scalar(select(func.count(Generation.id)).where(Generation.dataset_id == dataset_id))
    sets = session.scalar(select(func.count(AnnotationSet.id)).where(AnnotationSet.generation_id.in_(in_dataset)))
    spans = session.scalar(
        select(func.count(SpanRow.id))
        .join(AnnotationSet, AnnotationSet.id == SpanRow.set_id)
        .where(AnnotationSet.generation_id.in_(in_dataset))
    )
    return {"generations": generations or 0, "annotation_sets": sets or 0, "spans": spans or 0}


def _forget_deleted(session: Session, dataset: Dataset) -> None:
    """Drop the cascaded rows from the identity map: SQLite may hand their ids out again.

    Reads attributes from each object's loaded state only: touching an expired attribute
    would try to refresh a row that no longer exists.
    """
    session.expunge(dataset)
    # (object, primary key, loaded attributes) for everything the session holds
    loaded = [(o, inspect(o).identity[0], inspect(o).dict) for o in session.identity_map.values()]
    generation_ids = {k for o, k, d in loaded if isinstance(o, Generation) and d.get("dataset_id") == dataset.id}
    set_ids = {k for o, k, d in loaded if isinstance(o, AnnotationSet) and d.get("generation_id") in generation_ids}
    for obj, key, state in loaded:
        if (
            (isinstance(obj, Generation) and key in generation_ids)
            or (isinstance(obj, AnnotationSet) and key in set_ids)
            or (isinstance(obj, SpanRow) and state.get("set_id") in set_ids)
        ):
            session.expunge(obj)


def delete_dataset(session: Session, name: str, actor: User | None) -> Event:
    """Delete a dataset with its generations, sets and spans (database cascade); one event.

    The event's `before` holds the counts, so the log says what disappeared and who did it.
    """
    dataset = get_dataset(session, name)
    before = {"name": dataset.name, **_dataset_contents(session, dataset.id)}
    dataset_id, dataset_name = dataset.id, dataset.name
    session.execute(delete(Dataset).where(Dataset.id == dataset_id).execution_options(synchronize_session=False))
    _forget_deleted(session, dataset)
    return log_event(
        session,
        user=actor,
        action="dataset.delete",
        entity="dataset",
        entity_id=dataset_id,
        dataset=dataset_name,
        before=before,
        detail=f"deleted dataset '{dataset_name}' with {before['generations']} generations",
    )


def save_generated(
    session: Session,
    dataset_name: str,
    gen: CoreGeneration,
    trace: TokenTrace,
    *,
    user: User | None,
    probe_version: int | None = None,
    split: str = "train",
    source: str = "generated",
) -> Generation:
    """Store an answer made in the app (with its per-token data and, if scored, its probe scores);
    `source` is "imported" for a pasted conversation that the model did not write.

    The same answer twice in one dataset is stored once; the existing row is returned.
    """
    dataset = get_or_create_dataset(session, dataset_name)
    row = add_generation(session, dataset, gen, split=split, source=source, trace=trace, created_by=user)
    if row is None:
        digest = content_hash(gen.conversation)
        row = session.scalar(
            select(Generation).where(Generation.dataset_id == dataset.id, Generation.content_hash == digest)
        )
        assert row is not None, "add_generation stores nothing only when the dataset has this answer"
    else:
        log_event(
            session,
            user=user,
            action="generation.create",
            entity="generation",
            entity_id=row.id,
            generation_id=row.id,
            dataset=dataset.name,
            after={"tokens": len(trace.token_ids)},
        )
    if probe_version is not None and trace.scores is not None:
        store_scores(session, probe_version, row.id, trace.scores)
    return row


MAX_OVERLAP_K = 10


def set_overlap(session: Session, name: str, k: int, percent: int, actor: User | None) -> Dataset:
    """The dataset's overlap: `k` annotators for `percent`% of its answers (k = 1: none). Bad
    values are one message and change nothing; the change is an event (`dataset.overlap`)."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_OVERLAP_K:
        raise UserError(f"overlap must be 1 to {MAX_OVERLAP_K} annotators per answer, got {k!r}")
    if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= 100:
        raise UserError(f"the share of answers with overlap must be 1 to 100 percent, got {percent!r}")
    dataset = get_dataset(session, name)
    before = {"k": dataset.overlap_k or 1, "percent": dataset.overlap_percent or 100}
    dataset.overlap_k, dataset.overlap_percent = (None, None) if k == 1 else (k, percent)
    log_event(
        session,
        user=actor,
        action="dataset.overlap",
        entity="dataset",
        entity_id=dataset.id,
        dataset=dataset.name,
        before=before,
        after={"k": k, "percent": percent if k > 1 else 100},
    )
    return dataset
