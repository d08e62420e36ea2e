"""Reference documents and their passages, searched with the database's own full-text search.

SQLite: the FTS5 table `passages_fts` (`MATCH`, ranked by `bm25`), fed by triggers; the user's
text becomes a query of quoted words (`core.text.references.fts_query`), so no FTS5 syntax in
it can error. PostgreSQL: the generated `search_vector` column (`plainto_tsquery`, ranked by
`ts_rank`). Functions take a Session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.base.errors import UserError
from core.text.references import ReferenceDoc, fts_query, query_words
from db.events import log_event
from db.models import Passage, ReferenceDocument, User
from db.search_index import FTS_TABLE, PG_COLUMN, PG_CONFIG

MAX_COLLECTION_CHARS = 200
MAX_RESULTS = 50


@dataclass(frozen=True)
class PassageHit:
    """A retrieved passage, with its document's title and URL (what the judge and the hover show)."""

    id: int
    text: str
    title: str
    url: str | None
    collection: str


def import_documents(session: Session, docs: list[ReferenceDoc], *, collection: str, actor: User | None) -> dict:
    """Store documents and their passages (a document whose text is already stored is skipped)."""
    collection = " ".join(str(collection).split())
    if not 1 <= len(collection) <= MAX_COLLECTION_CHARS:
        raise UserError(f"a reference collection name must be 1 to {MAX_COLLECTION_CHARS} characters")
    known = set(session.scalars(select(ReferenceDocument.content_hash)))
    added = skipped = passages = 0
    for doc in docs:
        digest = doc.content_hash
        if digest in known:
            skipped += 1
            continue
        known.add(digest)
        row = ReferenceDocument(
            collection=collection,
            title=doc.title,
            url=doc.url,
            source=doc.source,
            content_hash=digest,
            created_by=actor.id if actor else None,
        )
        session.add(row)
        session.flush()
        session.add_all(Passage(document_id=row.id, position=i, text=p) for i, p in enumerate(doc.passages))
        added += 1
        passages += len(doc.passages)
    session.flush()
    log_event(
        session,
        user=actor,
        action="references.import",
        entity="reference_documents",
        entity_id=None,
        after={"collection": collection, "documents": added, "passages": passages, "skipped": skipped},
    )
    return {"collection": collection, "documents": added, "passages": passages, "skipped": skipped}


def list_collections(session: Session) -> list[dict]:
    """Each collection with its number of documents and passages."""
    rows = session.execute(
        select(ReferenceDocument.collection, func.count(func.distinct(ReferenceDocument.id)), func.count(Passage.id))
        .join(Passage, Passage.document_id == ReferenceDocument.id)
        .group_by(ReferenceDocument.collection)
        .order_by(ReferenceDocument.collection)
    )
    return [{"collection": c, "documents": int(d), "passages": int(p)} for c, d, p in rows]


def has_passages(session: Session) -> bool:
    return session.scalar(select(Passage.id).limit(1)) is not None


def search_passages(session: Session, query: str, limit: int = 5) -> list[PassageHit]:
    """The passages that best match `query` (any text: it is never read as search syntax)."""
    limit = max(1, min(int(limit), MAX_RESULTS))
    if not isinstance(query, str) or not query.strip():
        return []
    if session.get_bind().dialect.name == "sqlite":
        match = fts_query(query)
        if not match:
            return []
        ids_sql = text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q ORDER BY bm25({FTS_TABLE}) LIMIT :n")
        ids = [int(r) for r in session.execute(ids_sql, {"q": match, "n": limit}).scalars()]
    else:
        words = " ".join(query_words(query))
        if not words:
            return []
        ids_sql = text(
            f"SELECT id FROM passages WHERE {PG_COLUMN} @@ plainto_tsquery('{PG_CONFIG}', :q) "
            f"ORDER BY ts_rank({PG_COLUMN}, plainto_tsquery('{PG_CONFIG}', :q)) DESC, id LIMIT :n"
        )
        ids = [int(r) for r in session.execute(ids_sql, {"q": words, "n": limit}).scalars()]
    found = {hit.id: hit for hit in passages_by_id(session, ids)}
    return [found[i] for i in ids if i in found]


def passages_by_id(session: Session, ids: list[int]) -> list[PassageHit]:
    """The passages with these ids (unknown ids are left out), in id order."""
    if not ids:
        return []
    rows = session.execute(
        select(Passage.id, Passage.text, ReferenceDocument.title, ReferenceDocument.url, ReferenceDocument.collection)
        .join(ReferenceDocument, ReferenceDocument.id == Passage.document_id)
        .where(Passage.id.in_(sorted(set(ids))))
        .order_by(Passage.id)
    )
    return [PassageHit(*row) for row in rows]
