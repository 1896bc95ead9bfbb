"""The console API's OpenAPI schema fuzzed with schemathesis: whatever arrives (generated from the
schema, valid or not), as the owner, no route answers with a server error. In-process ASGI app on a
real SQLite database with a knowledge-base FAQ, a conversation and an unanswered question in it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, reject, settings

from assistant.commerce import db
from assistant.settings import Settings
from channels.transcripts import TranscriptStore
from knowledge_base import faq, unanswered

TOKEN = "fuzz-owner-token"


def _app():  # type: ignore[no-untyped-def]
    from channels.app import create_app

    directory = Path(tempfile.mkdtemp(prefix="kefu-fuzz-"))
    url = f"sqlite:///{directory / 'kefu.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as session:
        faq.seed_demo(session)
        unanswered.record(session, "可以刻字吗", "zh")
        session.commit()
    conversation_id, _ = TranscriptStore(db.session_factory(url)).open(None, "zh")
    return create_app(Settings(_env_file=None, var_dir=directory, database_url=url, admin_token=TOKEN, kb_port=9,
                               rasa_port=9, tracker_db=directory / "tracker.db"))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app()).include(path_regex="^/api/admin/")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_admin_route_answers_with_a_server_error(case):  # type: ignore[no-untyped-def]
    try:
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    except httpx.InvalidURL:  # the test client cannot even send it (a control character in the path)
        reject()
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
