"""``kefu admin``: console accounts from the command line."""

from __future__ import annotations

import secrets

import typer

from assistant.settings import get_settings

admin_app = typer.Typer(help="the merchant console: accounts", no_args_is_help=True)
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
