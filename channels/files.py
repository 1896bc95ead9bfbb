"""Files shoppers send (photos, voice messages): written atomically under a dated folder, found
again by their unguessable id through the row that records them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker


def keep(root: Path, file_id: str, extension: str, data: bytes, now: dt.datetime) -> str:
    """Write ``data`` to ``root/YYYY/MM/<id>.<extension>`` (never half-written); the relative path."""
    relative = Path(now.strftime("%Y/%m")) / f"{file_id}.{extension}"
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
    return str(relative)


def fetch(sessions: sessionmaker[Session], model: Any, root: Path, file_id: str) -> tuple[bytes, str] | None:
    """The bytes and media type of a kept file, by the id of its ``model`` row (``path``, ``media_type``)."""
    with sessions() as session:
        row = session.get(model, file_id)
        if row is None:
            return None
        path = root / row.path
        return (path.read_bytes(), row.media_type) if path.exists() else None
