"""The console's accounts and access rules: argon2 passwords, the session cookie, CSRF, login rate
limits, and every admin route against every kind of caller (anonymous, widget, agent, owner, the
owner's API token). Real gateway app on a real SQLite database (no other process needed)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from assistant.commerce import db
from assistant.settings import Settings
from channels.admin import accounts
from channels.admin.auth import COOKIE, LoginLimiter
from channels.admin.models import AdminSession, AdminUser, AuditEntry
from knowledge_base import unanswered

OWNER, AGENT = ("boss", "correct horse battery"), ("wang", "agent password 1")

# who may call each admin route: "staff" = owners and agents; "owner" = owners only; "public" = anyone
ACCESS = {
    ("POST", "/api/admin/auth/login"): "public",
    ("POST", "/api/admin/auth/logout"): "staff",
    ("GET", "/api/admin/auth/me"): "staff",
    ("GET", "/api/admin/users"): "owner",
    ("POST", "/api/admin/users"): "owner",
    ("PATCH", "/api/admin/users/{user_id}"): "owner",
    ("GET", "/api/admin/audit"): "owner",
    ("GET", "/api/admin/kb/faqs"): "staff",
    ("POST", "/api/admin/kb/faqs"): "owner",
    ("GET", "/api/admin/kb/faqs/{faq_id}"): "staff",
    ("PUT", "/api/admin/kb/faqs/{faq_id}"): "owner",
    ("POST", "/api/admin/kb/faqs/{faq_id}/publish"): "owner",
    ("POST", "/api/admin/kb/faqs/{faq_id}/unpublish"): "owner",
    ("DELETE", "/api/admin/kb/faqs/{faq_id}"): "owner",
    ("GET", "/api/admin/kb/faqs/{faq_id}/versions"): "staff",
    ("POST", "/api/admin/kb/faqs/{faq_id}/restore"): "owner",
    ("GET", "/api/admin/kb/unanswered"): "owner",
    ("POST", "/api/admin/kb/unanswered/{group_id}/dismiss"): "owner",
    ("POST", "/api/admin/kb/unanswered/{group_id}/draft"): "owner",
    ("POST", "/api/admin/kb/import"): "owner",
    ("GET", "/api/admin/kb/export"): "owner",
    ("POST", "/api/admin/kb/preview"): "staff",
    ("GET", "/api/admin/commerce/reorder"): "owner",
    ("GET", "/api/admin/commerce/forecast/{sku}"): "owner",
    ("GET", "/api/admin/commerce/returns"): "staff",
    ("GET", "/api/admin/commerce/returns/{rma_no}"): "staff",
    ("GET", "/api/admin/commerce/photos/{photo_id}"): "staff",
    ("GET", "/api/admin/handoff/queue"): "staff",
    ("GET", "/api/admin/analytics"): "owner",
    ("GET", "/api/admin/shoppers/export"): "owner",
    ("POST", "/api/admin/shoppers/delete"): "owner",
    ("GET", "/api/admin/analytics.csv"): "owner",
    ("GET", "/api/admin/conversations"): "staff",
    ("GET", "/api/admin/conversations/{conversation_id}"): "staff",
    ("POST", "/api/admin/conversations/{conversation_id}/reveal"): "owner",
    ("POST", "/api/admin/conversations/{conversation_id}/take"): "staff",
    ("POST", "/api/admin/conversations/{conversation_id}/release"): "staff",
    ("POST", "/api/admin/conversations/{conversation_id}/messages"): "staff",
}
PATH_VALUES = {"{user_id}": "999999", "{faq_id}": "999999", "{group_id}": "999999", "{sku}": "NOPE",
               "{rma_no}": "RMA-NOPE", "{photo_id}": "nope", "{conversation_id}": "c_nope"}


def database_with_accounts(directory: Path) -> str:
    """A migrated SQLite database in ``directory`` holding the test owner and agent; its URL."""
    url = f"sqlite:///{directory / 'kefu.db'}"
    db.upgrade(url)
    with db.session_factory(url)() as session:
        accounts.create_user(session, *OWNER, role="owner", display_name="店主")
        accounts.create_user(session, *AGENT, role="agent", display_name="小王")
        session.commit()
    return url


@pytest.fixture()
def app_and_db(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    from channels.app import create_app

    url = database_with_accounts(tmp_path)
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url=url, admin_token="script-token", kb_port=9,
                        admin_login_per_minute=1000)
    with TestClient(create_app(settings)) as client:
        yield client, url


def login(client: TestClient, username: str, password: str) -> dict:
    response = client.post("/api/admin/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf_token"]}


def admin_routes(client: TestClient) -> list[tuple[str, str]]:
    """From the OpenAPI schema, which lists the routes of included routers too."""
    paths = client.app.openapi()["paths"]
    return sorted((method.upper(), path) for path, item in paths.items() if path.startswith("/api/admin")
                  for method in item)


def call(client: TestClient, method: str, path: str, headers: dict | None = None):
    for name, value in PATH_VALUES.items():
        path = path.replace(name, value)
    return client.request(method, path, headers=headers or {}, content=b"{}" if method != "GET" else None)


def test_every_admin_route_is_in_the_access_table(app_and_db):
    client, _ = app_and_db
    assert set(admin_routes(client)) == set(ACCESS), "classify each new admin route in ACCESS"


def test_every_role_against_every_route(app_and_db):
    client, _ = app_and_db
    denied = {}
    for method, path in admin_routes(client):
        if ACCESS[(method, path)] == "public":
            continue
        # anonymous, and a widget-like caller (cookies of the storefront, no console session)
        assert call(client, method, path).status_code == 401, (method, path)
        client.cookies.set("kefu_widget", "whatever")
        assert call(client, method, path).status_code == 401, (method, path)
        client.cookies.clear()
        assert call(client, method, path, {"Authorization": "Bearer wrong"}).status_code == 401, (method, path)
        client.cookies.set(COOKIE, "forged-session-token")
        assert call(client, method, path).status_code == 401, (method, path)
        client.cookies.clear()

    for who, credentials in (("agent", AGENT), ("owner", OWNER)):
        client.cookies.clear()
        csrf = login(client, *credentials)
        for method, path in admin_routes(client):
            rule = ACCESS[(method, path)]
            if rule == "public" or path.endswith("/logout"):
                continue
            status = call(client, method, path, csrf).status_code
            allowed = rule == "staff" or who == "owner"
            if allowed:
                assert status not in (401, 403), (who, method, path, status)
            else:
                assert status == 403, (who, method, path, status)
                denied[(method, path)] = status
            if method != "GET":  # a write without the page's CSRF token is refused whoever sends it
                assert call(client, method, path).status_code == 403, (who, method, path)
    assert denied, "agents are refused something"

    client.cookies.clear()  # the script token acts as an owner, without cookies or CSRF
    token = {"Authorization": "Bearer script-token"}
    for method, path in admin_routes(client):
        if ACCESS[(method, path)] != "public" and not path.endswith("/logout"):
            assert call(client, method, path, token).status_code not in (401, 403), (method, path)


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(app_and_db):
    client, url = app_and_db
    response = client.post("/api/admin/auth/login", json={"username": OWNER[0], "password": OWNER[1]})
    cookie = response.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    token = response.cookies[COOKIE]
    with db.session_factory(url)() as session:
        stored = session.scalars(select(AdminSession.token_hash)).all()
        user = session.scalar(select(AdminUser).where(AdminUser.username == OWNER[0]))
    assert token not in stored and len(stored) == 1  # only the hash is kept
    assert user.password_hash.startswith("$argon2id$") and OWNER[1] not in user.password_hash
    me = client.get("/api/admin/auth/me").json()
    assert me["role"] == "owner" and me["display_name"] == "店主"
    assert client.get("/admin", follow_redirects=False).status_code == 200
    csrf = {"X-CSRF-Token": me["csrf_token"]}
    assert client.post("/api/admin/auth/logout", headers=csrf).status_code == 200
    client.cookies.set(COOKIE, token)  # the old cookie is dead on the server too
    assert client.get("/api/admin/auth/me").status_code == 401
    assert client.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"


def test_wrong_passwords_and_disabled_accounts_are_refused(app_and_db):
    client, url = app_and_db
    bad = client.post("/api/admin/auth/login", json={"username": OWNER[0], "password": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"] == "bad_credentials"
    assert client.post("/api/admin/auth/login", json={"username": "ghost", "password": "x"}).status_code == 401
    assert client.post("/api/admin/auth/login", content=b"{oops").status_code == 400
    assert client.post("/api/admin/auth/login", json={"username": OWNER[0]}).status_code == 400
    csrf = login(client, *OWNER)
    agent_id = next(u["id"] for u in client.get("/api/admin/users").json()["items"] if u["username"] == AGENT[0])
    other = TestClient(client.app)
    login(other, *AGENT)
    assert other.get("/api/admin/auth/me").status_code == 200
    assert client.patch(f"/api/admin/users/{agent_id}", json={"active": False}, headers=csrf).status_code == 200
    assert other.get("/api/admin/auth/me").status_code == 401  # disabling ends the agent's sessions
    assert other.post("/api/admin/auth/login", json={"username": AGENT[0], "password": AGENT[1]}).status_code == 401
    me = client.get("/api/admin/auth/me").json()
    last = client.patch(f"/api/admin/users/{me['id']}", json={"role": "agent"}, headers=csrf)
    assert last.status_code == 409 and last.json()["error"] == "last_owner"
    short = client.post("/api/admin/users", json={"username": "li", "password": "short", "role": "agent"}, headers=csrf)
    assert short.status_code == 400 and "10 characters" in short.json()["message"]
    dup = client.post("/api/admin/users", json={"username": AGENT[0], "password": "x" * 12, "role": "agent"}, headers=csrf)
    assert dup.status_code == 409
    bad_role = client.post("/api/admin/users", json={"username": "li", "password": "x" * 12, "role": "god"}, headers=csrf)
    assert bad_role.status_code == 400
    with db.session_factory(url)() as session:
        actions = [a.action for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions[:2] == ["login_failed", "login_failed"] and "user_changed" in actions and "login" in actions
    log = client.get("/api/admin/audit").json()["items"]
    assert (log[0]["action"], log[0]["username"]) == ("login_failed", AGENT[0])  # the disabled agent's try
    assert not any(secret in str(e) for e in log for secret in (OWNER[1], AGENT[1], "wrong"))


def test_login_is_rate_limited_per_account_and_per_address(tmp_path):
    now = [1000.0]
    limiter = LoginLimiter(per_minute=3, failures=2, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("10.0.0.1", "boss")
    with pytest.raises(Exception, match="too many login attempts") as caught:
        limiter.check("10.0.0.1", "boss")
    assert caught.value.status == 429 and int(caught.value.headers["Retry-After"]) <= 61
    now[0] += 61
    limiter.check("10.0.0.1", "boss")  # the minute has passed
    limiter.failed("boss")
    limiter.failed("BOSS")
    with pytest.raises(Exception, match="failed logins for this account"):
        limiter.check("10.0.0.2", "boss")  # another address, the same account: still locked
    limiter.check("10.0.0.2", "wang")
    now[0] += 15 * 60 + 1
    limiter.check("10.0.0.2", "boss")


def test_the_login_route_returns_429_after_repeated_failures(app_and_db):
    client, _ = app_and_db
    statuses = [client.post("/api/admin/auth/login", json={"username": AGENT[0], "password": f"guess {i}"}).status_code
                for i in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    locked = client.post("/api/admin/auth/login", json={"username": AGENT[0], "password": AGENT[1]})
    assert locked.status_code == 429 and "Retry-After" in locked.headers  # even the right password waits
    assert client.post("/api/admin/auth/login", json={"username": OWNER[0], "password": OWNER[1]}).status_code == 200


def test_owner_curates_faqs_agent_reads_them(app_and_db):
    client, url = app_and_db
    csrf = login(client, *OWNER)
    new = {"key": "gift_cards", "category": "payment", "questions_zh": ["有礼品卡吗"], "answer_zh": "礼品卡面值100元。",
           "questions_en": [], "answer_en": ""}
    created = client.post("/api/admin/kb/faqs", json=new, headers=csrf)
    assert created.status_code == 201 and created.json()["author"] == OWNER[0]
    faq_id = created.json()["id"]
    with db.session_factory(url)() as session:
        group = unanswered.record(session, "can you engrave my name", "en")
        session.commit()
    draft = client.post(f"/api/admin/kb/unanswered/{group.id}/draft", json={}, headers=csrf).json()
    refused = client.post(f"/api/admin/kb/faqs/{draft['id']}/publish", headers=csrf)
    assert refused.status_code == 400 and "write the answer" in refused.json()["message"]  # the placeholder
    agent = TestClient(client.app)
    agent_csrf = login(agent, *AGENT)
    assert agent.get(f"/api/admin/kb/faqs/{faq_id}").json()["key"] == "gift_cards"
    assert agent.post(f"/api/admin/kb/faqs/{faq_id}/publish", headers=agent_csrf).status_code == 403
    assert agent.put(f"/api/admin/kb/faqs/{faq_id}", json=new, headers=agent_csrf).status_code == 403
    assert agent.get("/api/admin/users").status_code == 403
    assert client.get(f"/api/admin/kb/faqs/{faq_id}").json()["status"] == "draft"


def test_import_reports_every_bad_row_and_imports_nothing(app_and_db):
    client, _ = app_and_db
    csrf = login(client, *OWNER)
    header = "key,category,tags,questions_zh,questions_en,answer_zh,answer_en,status\n"
    good = "gift_cards,payment,,有礼品卡吗,do you sell gift cards,礼品卡面值100元。,Gift cards come in ¥100.,\n"
    bad = "Bad Key!,payment,,问,,答,,\nno_answer,payment,,有发票吗,,,,\n"
    response = client.post("/api/admin/kb/import?format=csv", content=(header + good + bad).encode(), headers=csrf)
    assert response.status_code == 400 and response.json()["error"] == "invalid_rows"
    rows = {(e["row"], e["column"]) for e in response.json()["errors"]}
    assert (3, "key") in rows and any(r == 4 for r, _ in rows)
    assert client.get("/api/admin/kb/faqs").json()["total"] == 0
    assert client.post("/api/admin/kb/import?format=doc", content=b"x", headers=csrf).status_code == 400
    assert client.post("/api/admin/kb/import?format=csv", content=b"", headers=csrf).status_code == 400
    ok = client.post("/api/admin/kb/import?format=csv&publish=true", content=(header + good).encode(), headers=csrf)
    assert ok.status_code == 200 and ok.json()["created"] == 1
    exported = client.get("/api/admin/kb/export?format=xlsx")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(exported.content)).active
    assert [c.value for c in sheet[2]][:2] == ["gift_cards", "payment"]
    csv_text = client.get("/api/admin/kb/export?format=csv").content.decode("utf-8-sig")
    again = client.post("/api/admin/kb/import?format=csv", content=csv_text.encode(), headers=csrf)
    assert again.json()["unchanged"] == 1  # the export reads back as it was


def test_console_pages_and_assets(app_and_db):
    client, _ = app_and_db
    page = client.get("/admin/login")
    assert page.status_code == 200 and "login-form" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/admin", follow_redirects=False).status_code == 303
    for name in ("console.js", "console.css", "i18n.js"):
        assert client.get(f"/admin/static/{name}").status_code == 200
    assert client.get("/admin/static/..%2Fauth.py").status_code == 404
    assert client.get("/admin/static/console.html").status_code == 404


def test_create_user_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from assistant.cli import app
    from assistant.settings import get_settings

    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    db.upgrade(url)
    monkeypatch.setenv("KEFU_DATABASE_URL", url)
    monkeypatch.setenv("KEFU_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        made = runner.invoke(app, ["admin", "create-user", "zhao", "--role", "owner"],
                             input="a long password\na long password\n")
        assert made.exit_code == 0, made.output
        short = runner.invoke(app, ["admin", "create-user", "qian"], env={"KEFU_NEW_PASSWORD": "short"})
        assert short.exit_code == 2 and "10 characters" in short.output
        listed = runner.invoke(app, ["admin", "list-users"])
        assert "zhao" in listed.output and "owner" in listed.output
        with db.session_factory(url)() as session:
            assert accounts.authenticate(session, "zhao", "a long password") is not None
            assert accounts.authenticate(session, "zhao", "a long passwor") is None
    finally:
        get_settings.cache_clear()
