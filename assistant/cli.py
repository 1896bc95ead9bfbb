"""The ``kefu`` command: a thin layer over importable functions."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from assistant.settings import PROJECT_ROOT, get_settings

app = typer.Typer(help="kefu: self-hosted AI customer service for online shops", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="database schema", no_args_is_help=True)
shop_app = typer.Typer(help="the demo shop", no_args_is_help=True)
nlu_app = typer.Typer(help="intent classification and entity extraction", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(shop_app, name="shop")
app.add_typer(nlu_app, name="nlu")

DEFAULT_NLU_DATA = [PROJECT_ROOT / "assistant" / "data" / "nlu"]


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date (Alembic)."""
    from assistant.commerce import db

    db.upgrade(get_settings().db_url)


@shop_app.command("generate")
def shop_generate(force: bool = typer.Option(False, help="replace an existing shop"),
                  seed: int = typer.Option(7, help="random seed; the same seed gives the same shop")) -> None:
    """Create the demo shop (catalog, customers, orders, coupons, sales history, FAQ)."""
    from assistant.commerce import db, demo

    url = get_settings().db_url
    db.upgrade(url)
    with db.session_factory(url)() as session:
        if not force and not demo.shop_is_empty(session):
            typer.echo("demo shop already generated (use --force to replace it)")
            return
        summary = demo.generate(session, seed=seed)
    typer.echo(f"demo shop generated: {summary}")


@shop_app.command("export-lookups")
def shop_export_lookups(out: Path = typer.Option(None, help="Rasa YAML file to write")) -> None:
    """Write the catalog's product names, colours and sizes as NLU lookup tables."""
    from assistant.commerce import db
    from assistant.commerce.lookups import write_lookups

    settings = get_settings()
    out = out or settings.var_dir / "data" / "catalog_lookups.yml"
    with db.session_factory(settings.db_url)() as session:
        typer.echo(f"wrote {write_lookups(session, out)}")


@nlu_app.command("train")
def nlu_train(data: list[Path] = typer.Option(None, help="Rasa NLU YAML files or directories"),
              out: Path = typer.Option(None, help="model directory"),
              if_changed: bool = typer.Option(False, help="skip when the model was trained on the same data"),
              epochs: int = typer.Option(40, help="BiLSTM epochs")) -> None:
    """Train the FastText + BiLSTM intent classifier."""
    from tqdm import tqdm

    from nlu import classifier, training

    settings = get_settings()
    data = data or DEFAULT_NLU_DATA + [settings.var_dir / "data" / "catalog_lookups.yml"]
    data = [p for p in data if p.exists() or p not in DEFAULT_NLU_DATA]
    out = out or settings.nlu_model_path
    if if_changed and training.is_up_to_date(data, out):
        typer.echo(f"intent model in {out} is up to date")
        return
    bar = tqdm(total=2 * epochs, desc="training BiLSTM (split, then all data)", unit="epoch", file=sys.stderr)

    def progress(epoch: int, total: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    model = training.train_from_files(data, out, classifier.TrainConfig(epochs=epochs), progress)
    bar.close()
    typer.echo(f"intent model saved to {out}: {model.meta['metrics']}")


@nlu_app.command("serve")
def nlu_serve(model: Path = typer.Option(None, help="model directory"), port: int = typer.Option(None)) -> None:
    """Serve ``POST /model/parse`` for Rasa's ``nlu:`` endpoint."""
    import uvicorn

    from nlu.server import create_app

    _logging()
    settings = get_settings()
    uvicorn.run(create_app(model or settings.nlu_model_path, settings.nlu_threshold), host=settings.host,
                port=port or settings.nlu_port, log_level="warning")


@app.command("setup")
def setup() -> None:
    """Schema, demo shop, lookup tables, intent model and Rasa model: whatever is missing or stale."""
    from assistant.setup import train_rasa

    shop_generate(force=False, seed=7)
    shop_export_lookups(out=None)
    nlu_train(data=None, out=None, if_changed=True, epochs=40)
    train_rasa(get_settings(), echo=typer.echo)


@app.command("actions")
def actions_serve(port: int = typer.Option(None)) -> None:
    """Run the rasa-sdk action server with kefu's dialog-to-action hooks."""
    import os

    settings = get_settings()
    os.execv(sys.executable, [sys.executable, "-m", "rasa_sdk", "--actions", "assistant.actions",
                              "--port", str(port or settings.actions_port)])


@app.command("gateway")
def gateway_serve(port: int = typer.Option(None)) -> None:
    """Run the gateway: widget WebSocket, storefront demo pages, checkout."""
    import uvicorn

    from channels.app import create_app

    _logging()
    settings = get_settings()
    typer.echo(f"\n  kefu demo storefront with the chat widget: {settings.gateway_url}/\n"
               f"  English storefront: {settings.gateway_url}/?lang=en\n")
    uvicorn.run(create_app(settings), host=settings.host, port=port or settings.gateway_port, log_level="warning")


if __name__ == "__main__":
    app()
