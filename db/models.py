"""The schema: SQLAlchemy 2.x typed ORM. Changes go through an Alembic migration (db/migrations).

Per-token arrays (ids, offsets, log-probs, entropies, scores) are stored as little-endian
numpy bytes: compact, identical on SQLite and PostgreSQL, decoded by `db.arrays`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    validates,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Role(StrEnum):
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class RunKind(StrEnum):
    RETRAIN = "retrain"
    RESCORE = "rescore"
    GENERATE = "generate"
    SEED = "seed"
    LABEL = "label"  # an LLM judge pre-annotates answers (core.orchestration.label_run)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JudgeStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"  # the judge's output could not be parsed or matched after one retry


class AssignmentStatus(StrEnum):
    ASSIGNED = "assigned"
    DONE = "done"
    EXPIRED = "expired"


class GenerationSource(StrEnum):
    GENERATED = "generated"
    IMPORTED = "imported"
    SERVED = "served"  # answered by `python -m core serve` and captured (see ApiKey.capture)


class CaptureMode(StrEnum):
    OFF = "off"
    ALL = "all"
    FLAGGED = "flagged"  # only answers whose maximum risk reaches the key's threshold


ROLES = tuple(r.value for r in Role)
GOLD_OWNER = "gold"


def _one_of(enum: type[StrEnum], column: str, value: str) -> str:
    """Status columns are plain strings in SQL; the allowed values live in the enums above."""
    if value not in enum.__members__.values():
        raise ValueError(f"{column} must be one of {', '.join(enum)}, not {value!r}")
    return str(value)  # the plain string: drivers bind str, not enum members


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # NFKC + casefold of the name: "Ann" and "ann" (or a full-width "ａnn") are one account
    name_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=Role.ANNOTATOR.value)  # Role
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # a model's account (an LLM judge's annotation sets): never signs in, listed as "model"
    bot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @validates("role")
    def _check_role(self, _key: str, value: str) -> str:
        return _one_of(Role, "users.role", value)


class ApiKey(Base):
    """A key for the serving API (`python -m core serve`): the client keeps the secret, this
    row only its sha256, so a leaked database gives no working key.

    Revoked by an admin, and with all of the person's sign-ins when their role changes or they
    are deactivated. `capture` says which served answers go into `capture_dataset`."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell keys apart
    name: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(100))
    capture: Mapped[str] = mapped_column(String(10), default=CaptureMode.OFF.value)  # CaptureMode
    capture_dataset: Mapped[str | None] = mapped_column(String(200))
    capture_threshold: Mapped[float | None] = mapped_column(Float)

    @validates("capture")
    def _check_capture(self, _key: str, value: str) -> str:
        return _one_of(CaptureMode, "api_keys.capture", value)


class UserSession(Base):
    """A browser sign-in: the cookie holds a random token, this row only its sha256.

    Revoked when the person signs out (or out everywhere) and when an admin changes their
    role, deactivates them or resets their password; idle ones expire.
    """

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(100))

    user: Mapped[User] = relationship()


class ModelRecord(Base):
    """A language model generations were produced with or probes were trained on."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(500), unique=True)  # HF id, local path or embedded id
    revision: Mapped[str | None] = mapped_column(String(100))
    tokenizer_hash: Mapped[str | None] = mapped_column(String(64))
    num_layers: Mapped[int | None] = mapped_column(Integer)
    hidden_size: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: overlap: `overlap_k` annotators (NULL = 1) for `overlap_percent`% of the answers (NULL = 100)
    overlap_k: Mapped[int | None] = mapped_column(Integer, nullable=True)
    overlap_percent: Mapped[int | None] = mapped_column(Integer, nullable=True)

    generations: Mapped[list[Generation]] = relationship(back_populates="dataset", passive_deletes=True)


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (
        UniqueConstraint("dataset_id", "content_hash"),
        Index("ix_generations_dataset_split", "dataset_id", "split"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200))  # the interchange "id"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(50), default="train")
    conversation: Mapped[list[Any]] = mapped_column(JSON)
    completion: Mapped[str] = mapped_column(Text)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(20), default=GenerationSource.IMPORTED.value)  # GenerationSource
    content_hash: Mapped[str] = mapped_column(String(64))
    token_ids: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_offsets: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_texts: Mapped[list[Any] | None] = mapped_column(JSON)
    logprobs: Mapped[bytes | None] = mapped_column(LargeBinary)
    entropies: Mapped[bytes | None] = mapped_column(LargeBinary)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="generations")
    model: Mapped[ModelRecord | None] = relationship()

    @validates("source")
    def _check_source(self, _key: str, value: str) -> str:
        return _one_of(GenerationSource, "generations.source", value)


class AnnotationSet(Base):
    """One annotator's spans for one generation (or the gold set): replaced whole, versioned."""

    __tablename__ = "annotation_sets"
    __table_args__ = (UniqueConstraint("generation_id", "owner"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(120))  # "user:<id>" or "gold"
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    spans: Mapped[list[SpanRow]] = relationship(
        back_populates="annotation_set", cascade="all, delete-orphan", order_by="SpanRow.start", passive_deletes=True
    )


class SpanRow(Base):
    __tablename__ = "spans"

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("annotation_sets.id", ondelete="CASCADE"), index=True)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)

    annotation_set: Mapped[AnnotationSet] = relationship(back_populates="spans")


class Event(Base):
    """Append-only audit log: enough to undo any change and to see who did what."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    generation_id: Mapped[int | None] = mapped_column(Integer, index=True)  # no FK: events outlive deletes
    dataset: Mapped[str | None] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(Text)


class Probe(Base):
    __tablename__ = "probes"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    layer: Mapped[int] = mapped_column(Integer)
    artifact_path: Mapped[str] = mapped_column(String(1000))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent_version: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    training_data_hash: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # sha256 over the files' names and hashes (core.probes.version_files.content_hash); names the cache folder
    content_hash: Mapped[str | None] = mapped_column(String(64))

    model: Mapped[ModelRecord] = relationship()


class ProbeFile(Base):
    """One file of a probe version (head, config, adapter files): every host loads versions from here."""

    __tablename__ = "probe_files"
    __table_args__ = (UniqueConstraint("probe_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))  # relative, one of core.probes.version_files.VERSION_FILES
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class TrainRun(Base):
    __tablename__ = "train_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), default=RunKind.RETRAIN.value)  # RunKind
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value)  # RunStatus
    stage: Mapped[str | None] = mapped_column(String(40))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pid: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    probe_id: Mapped[int | None] = mapped_column(ForeignKey("probes.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @validates("kind")
    def _check_kind(self, _key: str, value: str) -> str:
        return _one_of(RunKind, "train_runs.kind", value)

    @validates("status")
    def _check_status(self, _key: str, value: str) -> str:
        return _one_of(RunStatus, "train_runs.status", value)


class Prediction(Base):
    """Cached per-token scores of one probe version on one generation (for heatmaps)."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("probe_id", "generation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"))
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    scores: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """k annotators per generation; a lease that expires returns the item to the queue."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("generation_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=AssignmentStatus.ASSIGNED.value)  # AssignmentStatus
    leased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @validates("status")
    def _check_status(self, _key: str, value: str) -> str:
        return _one_of(AssignmentStatus, "assignments.status", value)


class Skip(Base):
    """An annotator passed on an answer (Label Studio's / Prodigy's skip): it leaves their default
    queue, and `assign` no longer hands it to them. One row per (answer, person); skipping again
    only moves the time."""

    __tablename__ = "skips"
    __table_args__ = (UniqueConstraint("generation_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    skipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnswerComment(Base):
    """A comment on an answer; `flagged` asks a reviewer to look until someone resolves it."""

    __tablename__ = "answer_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Guideline(Base):
    """One version of the annotation guidelines (markdown written by an admin); the newest is shown."""

    __tablename__ = "guidelines"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Judge(Base):
    """An OpenAI-compatible chat endpoint that pre-annotates answers (issue #24).

    `api_key_env` is the *name* of the environment variable holding the key: the key itself is
    never stored. The judge's labels are the annotation sets of its bot account `bot_user_id`."""

    __tablename__ = "judges"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    base_url: Mapped[str] = mapped_column(String(1000))
    model: Mapped[str] = mapped_column(String(300))
    api_key_env: Mapped[str | None] = mapped_column(String(200))
    price_input_per_m: Mapped[float | None] = mapped_column(Float)  # price per million input tokens
    price_output_per_m: Mapped[float | None] = mapped_column(Float)
    concurrency: Mapped[int] = mapped_column(Integer, default=4)
    timeout_s: Mapped[float] = mapped_column(Float, default=120.0)
    bot_user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JudgeInstruction(Base):
    """One version of the judge's instructions; the team's guidelines are added when asking."""

    __tablename__ = "judge_instructions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReferenceDocument(Base):
    """A reference text an admin imported (in collection `collection`), split into passages."""

    __tablename__ = "reference_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    collection: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(500))
    url: Mapped[str | None] = mapped_column(String(2000))
    source: Mapped[str] = mapped_column(String(500))  # the file it came from (its name only)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Passage(Base):
    """A bounded piece of a reference document, indexed by the database's full-text search
    (SQLite: the FTS5 table `passages_fts`; PostgreSQL: the generated `search_vector` column,
    both made by migration 0007 and kept out of the ORM, see `db.references`)."""

    __tablename__ = "passages"

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("reference_documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class JudgeResult(Base):
    """The cache of judge calls: one outcome per (answer, judge, instructions version, evidence).

    A re-run finds an `ok` row and skips the call; a `failed` row is asked again and replaced.
    `spans` are the matched spans (code points) with their notes and cited passage ids;
    `unmatched` what could not be placed."""

    __tablename__ = "judge_results"
    __table_args__ = (UniqueConstraint("generation_id", "judge_id", "instructions_version", "evidence_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    judge_id: Mapped[int] = mapped_column(ForeignKey("judges.id", ondelete="CASCADE"), index=True)
    instructions_version: Mapped[int] = mapped_column(Integer)
    evidence_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # JudgeStatus
    reason: Mapped[str | None] = mapped_column(Text)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float | None] = mapped_column(Float)
    spans: Mapped[list[Any]] = mapped_column(JSON, default=list)
    unmatched: Mapped[list[Any]] = mapped_column(JSON, default=list)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("train_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @validates("status")
    def _check_status(self, _key: str, value: str) -> str:
        return _one_of(JudgeStatus, "judge_results.status", value)
