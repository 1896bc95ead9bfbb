"""Engine and session factory; Alembic migrations bring the schema up to date."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
IN_LIMIT = 500  # values in one SQL IN (...) list, well under SQLite's variable limit
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = IN_LIMIT) -> Iterator[Sequence[T]]:
    """``items`` in slices small enough for one ``IN (...)`` each."""
    return (items[i:i + size] for i in range(0, len(items), size))


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


def upgrade(url: str) -> None:
    """Apply every Alembic migration to the database at ``url``."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


COPY_BATCH = 1000  # rows per INSERT when copying a database


def copy_database(source_url: str, target_url: str, progress: bool = False) -> dict[str, int]:
    """Copy every row of kefu's tables from ``source_url`` to ``target_url`` (e.g. the SQLite file of
    a shop that outgrew it into PostgreSQL). The target's schema is brought up to date first and
    must hold no rows yet, so nothing there is overwritten. Returns the rows copied per table."""
    import channels.admin.models  # noqa: F401  (every table shares one metadata)
    import knowledge_base.models  # noqa: F401
    from sqlalchemy import func, insert, select, text
    from tqdm import tqdm

    from assistant.commerce.models import Base

    upgrade(target_url)
    source, target = engine_for(source_url), engine_for(target_url)
    tables = Base.metadata.sorted_tables  # parents before children
    with target.connect() as connection:
        filled = [t.name for t in tables if connection.scalar(select(func.count()).select_from(t))]
    if filled:
        raise ValueError(f"the target database already holds rows in {', '.join(filled[:5])}"
                         f"{' …' if len(filled) > 5 else ''}; copy into an empty database")
    copied: dict[str, int] = {}
    with source.connect() as reading, target.begin() as writing:
        for table in tqdm(tables, desc="copying tables", unit="table", disable=not progress):
            rows = reading.execute(select(table)).mappings()
            count = 0
            while batch := [dict(row) for row in rows.fetchmany(COPY_BATCH)]:
                writing.execute(insert(table), batch)
                count += len(batch)
            copied[table.name] = count
        if target.dialect.name == "postgresql":  # identity columns continue after the copied ids
            for table in tables:
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (column.autoincrement == "auto" and
                                                        column.type.python_type is int and
                                                        len(table.primary_key.columns) == 1):
                        writing.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                            f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false) "
                            f"WHERE pg_get_serial_sequence('{table.name}', '{column.name}') IS NOT NULL"))
    return copied
