"""``kefu admin``: console accounts from the command line."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from pathlib import Path

import typer

from assistant.settings import get_settings

admin_app = typer.Typer(help="the merchant console: accounts", no_args_is_help=True)
privacy_app = typer.Typer(help="personal data: a shopper's export and deletion, retention", no_args_is_help=True)
DEMO_ACCOUNTS_FILE = "console-accounts.txt"


def _sessions():  # type: ignore[no-untyped-def]
    from assistant.commerce import db

    return db.session_factory(get_settings().db_url)


@admin_app.command("create-user")
def create_user(username: str = typer.Argument(..., help="the login name"),
                role: str = typer.Option("agent", help="owner (everything) or agent (conversations)"),
                display_name: str = typer.Option("", help="the name shoppers see when this person answers"),
                password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                             envvar="KEFU_NEW_PASSWORD",
                                             help="at least 10 characters (or KEFU_NEW_PASSWORD)")) -> None:
    """Create a console account."""
    from channels.admin import accounts

    with _sessions()() as session:
        try:
            user = accounts.create_user(session, username, password, role, display_name)
        except accounts.AccountError as error:
            typer.echo(f"error: {error.message}", err=True)
            raise typer.Exit(2) from error
        accounts.audit(session, "cli", "user_created", user.username, role=user.role)
        session.commit()
    typer.echo(f"created {role} {username!r}")


@admin_app.command("list-users")
def list_users() -> None:
    """The console's accounts."""
    from sqlalchemy import select

    from channels.admin.models import AdminUser

    with _sessions()() as session:
        for user in session.scalars(select(AdminUser).order_by(AdminUser.id)):
            typer.echo(f"{user.id:4d}  {user.username:24s} {user.role:6s} {'active' if user.active else 'disabled'}")


def ensure_demo_accounts() -> None:
    """On a shop with no console account yet: an owner and an agent with generated passwords, written
    to var/console-accounts.txt (readable by its owner only) so the demo can be logged into."""
    from sqlalchemy import select

    from channels.admin import accounts
    from channels.admin.models import AdminUser

    settings = get_settings()
    with _sessions()() as session:
        if session.scalar(select(AdminUser.id).limit(1)) is not None:
            return
        made = [(name, role, secrets.token_urlsafe(12)) for name, role in (("owner", "owner"), ("agent", "agent"))]
        for name, role, password in made:
            accounts.create_user(session, name, password, role, display_name={"owner": "店主 Owner",
                                                                              "agent": "客服小王 Agent Wang"}[name])
        session.commit()
    path = settings.var_dir / DEMO_ACCOUNTS_FILE
    path.write_text("".join(f"{role}\t{name}\t{password}\n" for name, role, password in made))
    path.chmod(0o600)
    typer.echo(f"console accounts created: owner and agent; their passwords are in {path}")


def _tracker():  # type: ignore[no-untyped-def]
    from channels.admin.analytics import tracker_engine

    return tracker_engine(get_settings().tracker_url)


def _customer(session, phone: str | None, email: str | None):  # type: ignore[no-untyped-def]
    from assistant import retention

    try:
        return retention.find_customer(session, phone, email)
    except (ValueError, LookupError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error


@privacy_app.command("export")
def privacy_export(phone: str = typer.Option(None, help="the shopper's phone number"),
                   email: str = typer.Option(None, help="or their email"),
                   out: Path = typer.Option(..., help="JSON file to write (it holds personal data)")) -> None:
    """Everything kefu holds about one shopper, for their access request."""
    import json

    from assistant import retention

    with _sessions()() as session:
        customer = _customer(session, phone, email)
        data = retention.export_shopper(session, _tracker(), customer)
        from channels.admin import accounts

        accounts.audit(session, "cli", "shopper_export", f"customer:{customer.id}")
        session.commit()
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2))
    out.chmod(0o600)
    typer.echo(f"wrote {out}: {len(data['orders'])} orders, {len(data['conversations'])} conversations")


@privacy_app.command("delete")
def privacy_delete(phone: str = typer.Option(None, help="the shopper's phone number"),
                   email: str = typer.Option(None, help="or their email"),
                   yes: bool = typer.Option(False, "--yes", help="do it (without it, only say what would go)")) -> None:
    """Delete one shopper's conversations, photos and voice messages, and anonymise their record."""
    from assistant import retention
    from channels.admin import accounts

    settings = get_settings()
    with _sessions()() as session:
        customer = _customer(session, phone, email)
        if not yes:
            found = retention.conversations_of(session, _tracker(), customer)
            typer.echo(f"customer {customer.id}: {len(found)} conversations would be deleted; add --yes to do it")
            return
        removed = retention.delete_shopper(session, _tracker(), customer, settings.photos_path,
                                           settings.audio_path)
        accounts.audit(session, "cli", "shopper_deleted", f"customer:{customer.id}", **asdict(removed))
        session.commit()
    typer.echo(f"deleted: {removed}")


@privacy_app.command("purge")
def privacy_purge(days: int = typer.Option(None, help="keep this many days (default: KEFU_RETENTION_DAYS)")) -> None:
    """Delete conversations idle for longer than the retention period."""
    from assistant import retention

    settings = get_settings()
    with _sessions()() as session:
        try:
            removed = retention.purge(session, _tracker(), days or settings.retention_days,
                                      settings.photos_path, settings.audio_path)
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from error
        session.commit()
    typer.echo(f"purged: {removed}")
