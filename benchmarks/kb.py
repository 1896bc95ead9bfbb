"""Knowledge-base retrieval benchmark: hybrid against dense-only and BM25-only, at 100, 1,000 and 10,000 FAQ entries.

    .venv/bin/python benchmarks/kb.py                      # every size, every mode
    .venv/bin/python benchmarks/kb.py --sizes 100 --modes hybrid
    KEFU_KB_EMBEDDING_MODEL=<dir> .venv/bin/python benchmarks/kb.py --sizes 100 --no-doc --results /tmp/kb.json

The FAQ is the demo shop's (65 entries, zh + en) padded with generated product questions (material,
care, size, warranty... of every catalog product type and style) up to each size. The queries are
``benchmarks/data/kb_queries.jsonl``: four paraphrases per entry and language written without reusing
the FAQ's wording (two until 2026-12-05; 130 questions per language gave Recall@1 a standard error of
about 0.03), plus questions no entry answers. The confidence model is calibrated once, on the
100-entry FAQ, and used at every size. Publish-to-searchable is the time from committing a published
entry to SQL until a search returns it, with the knowledge base's own change-log poller running.

Prints a table, writes ``benchmarks/results/kb.json`` and the knowledge-base section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.commerce import catalog_data as cd  # noqa: E402
from assistant.commerce import db  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from knowledge_base import faq  # noqa: E402
from knowledge_base.confidence import calibrate  # noqa: E402
from knowledge_base.evaluate import evaluate, load_queries  # noqa: E402
from knowledge_base.faq import FaqInput  # noqa: E402
from knowledge_base import tuning  # noqa: E402
from knowledge_base.service import KnowledgeBase  # noqa: E402
from knowledge_base.sync import all_targets  # noqa: E402
from benchmarks.doc import write_section  # noqa: E402

QUERIES = ROOT / "benchmarks" / "data" / "kb_queries.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "kb.json"
MODES = ("hybrid", "dense", "bm25")

# (key, zh question templates, en question templates, zh answer, en answer); {n}/{e} are the product names
ASPECTS = [
    ("material", ["{n}是什么材质的", "{n}用的什么面料"], ["what is the {e} made of", "what material is the {e}"],
     "{n}采用{m}材质，手感{f}。", "The {e} is made of {m_en} and feels {f_en}."),
    ("care", ["{n}怎么清洗", "{n}可以机洗吗"], ["how do I clean the {e}", "can the {e} go in the washing machine"],
     "{n}建议{c}，避免暴晒。", "Clean the {e} by {c_en}; keep it out of strong sun."),
    ("size", ["{n}的尺寸是多少", "{n}有多大"], ["what are the dimensions of the {e}", "how big is the {e}"],
     "{n}的尺寸约为{d}厘米，重量{w}克。", "The {e} measures about {d} cm and weighs {w} g."),
    ("origin", ["{n}是哪里生产的", "{n}产地是哪里"], ["where is the {e} made", "what is the origin of the {e}"],
     "{n}产自{o}，经过{q}道质检。", "The {e} is made in {o_en} and passes {q} quality checks."),
    ("warranty", ["{n}保修多久", "{n}坏了能修吗"], ["how long is the {e} guaranteed", "can the {e} be repaired"],
     "{n}享受{y}个月品质保障。", "The {e} has a {y}-month quality guarantee."),
    ("suitable", ["{n}适合什么人用", "{n}适合送人吗"], ["who is the {e} suitable for", "is the {e} a good gift"],
     "{n}适合{p}，也适合作为礼物。", "The {e} suits {p_en} and makes a good gift."),
    ("colours", ["{n}有几种颜色", "{n}有什么颜色可选"], ["how many colours does the {e} come in",
                                                 "which colours are available for the {e}"],
     "{n}有{k}种颜色可选。", "The {e} comes in {k} colours."),
    ("package", ["{n}包装里有什么", "{n}配件有哪些"], ["what is in the {e} box", "which accessories come with the {e}"],
     "{n}包装内含主体、说明书和{a}。", "The {e} box holds the item, a manual and {a_en}."),
    ("batch", ["{n}是新款吗", "{n}什么时候上市的"], ["is the {e} a new model", "when was the {e} released"],
     "{n}于{v}年上市，是当季款。", "The {e} was released in {v} and is this season's model."),
]
MATERIALS = [("纯棉", "cotton", "柔软", "soft"), ("涤纶", "polyester", "顺滑", "smooth"), ("羊毛", "wool", "温暖", "warm"),
             ("不锈钢", "stainless steel", "坚固", "sturdy"), ("陶瓷", "ceramic", "细腻", "fine"),
             ("真皮", "leather", "有质感", "rich")]
CARE = [("手洗", "hand washing"), ("冷水机洗", "cold machine wash"), ("湿布擦拭", "wiping with a damp cloth")]
ORIGINS = [("浙江", "Zhejiang"), ("广东", "Guangdong"), ("福建", "Fujian"), ("江苏", "Jiangsu")]
PEOPLE = [("上班族", "office workers"), ("学生", "students"), ("运动爱好者", "sporty people"), ("长辈", "older relatives")]
ACCESSORIES = [("防尘袋", "a dust bag"), ("备用配件", "spare parts"), ("礼品卡片", "a gift card")]


def padding(count: int) -> list[FaqInput]:
    """``count`` generated product-question entries (deterministic)."""
    out: list[FaqInput] = []
    number = 0
    for category, types in cd.PRODUCT_TYPES.items():
        for style_zh, style_en, _ in cd.STYLES[category]:
            for type_zh, type_en, _, _ in types:
                for brand in cd.BRANDS[category]:
                    brand_zh, brand_en = brand.split(" ", 1)
                    for aspect, qzh, qen, azh, aen in ASPECTS:
                        if len(out) >= count:
                            return out
                        number += 1
                        m = MATERIALS[number % len(MATERIALS)]
                        c = CARE[number % len(CARE)]
                        o = ORIGINS[number % len(ORIGINS)]
                        p = PEOPLE[number % len(PEOPLE)]
                        a = ACCESSORIES[number % len(ACCESSORIES)]
                        values = dict(n=f"{brand_zh}{style_zh}{type_zh}", e=f"{brand_en} {style_en} {type_en}",
                                      m=m[0], m_en=m[1], f=m[2], f_en=m[3], c=c[0], c_en=c[1], o=o[0], o_en=o[1],
                                      p=p[0], p_en=p[1], a=a[0], a_en=a[1], d=20 + number % 60,
                                      w=100 + number % 900, q=3 + number % 5, y=6 + number % 19, k=2 + number % 6,
                                      v=2020 + number % 6)
                        out.append(FaqInput(
                            key=f"p{number:05d}_{aspect}"[:48], category=f"product_{category}", status="published",
                            questions_zh=[q.format(**values) for q in qzh],
                            questions_en=[q.format(**values) for q in qen],
                            answer_zh=azh.format(**values), answer_en=aen.format(**values)))
    # more than the catalog's combinations: number the series
    while len(out) < count:
        base = out[len(out) % max(1, number)]
        series = len(out) // max(1, number) + 1
        out.append(FaqInput(**{**base.model_dump(), "key": f"{base.key[:40]}_s{series}",
                               "questions_zh": [q.replace("是", f"第{series}代是", 1) for q in base.questions_zh],
                               "questions_en": [f"{q} (series {series})" for q in base.questions_en]}))
    return out


def faq_database(size: int, work: Path) -> str:
    """The URL of a database holding the demo FAQ padded to ``size`` entries (made on first use)."""
    url = f"sqlite:///{work / f'kb{size}.db'}"
    if not (work / f"kb{size}.db").exists():
        db.upgrade(url)
        with db.session_factory(url)() as session:
            faq.seed_demo(session)
            for item in padding(size - len(faq.load_yaml())):
                faq.create(session, item, author="benchmark", action="import")
            session.commit()
    return url


def tuned_models(size: int, work: Path, languages: list[str]) -> dict[str, dict]:
    """Each language's model tuned on the ``size``-entry FAQ as ``kefu kb tune`` does: language -> its
    description (``path`` relative to ``work``)."""
    with db.session_factory(faq_database(size, work))() as session:
        targets = all_targets(session)
    settings = Settings(_env_file=None)
    out = {}
    for language in languages:
        base = tuning.base_model(settings, language)
        if tuning.tunable(base):
            out[language] = tuning.tune(targets, base, work, log=lambda line: print(f"   {line}", flush=True),
                                        language=language)
    return out


def build(size: int, work: Path, tuned: dict[str, str] | None = None) -> tuple[KnowledgeBase, float, float]:
    """A knowledge base with the demo FAQ padded to ``size`` entries, each language searched with its
    ``tuned`` model (language -> path; default: the configured one): (kb, seconds to index, entries/s)."""
    url = faq_database(size, work)
    models = {"kb_embedding_model": (tuned or {}).get("en"), "kb_zh_embedding_model": (tuned or {}).get("zh")}
    settings = Settings(_env_file=None, var_dir=work / f"var{size}", database_url=url, kb_min_confidence=None,
                        **{key: value for key, value in models.items() if value})
    kb = KnowledgeBase(settings)
    started = time.perf_counter()
    kb.sync.rebuild()
    seconds = time.perf_counter() - started
    return kb, seconds, size / seconds


def publish_latency(kb: KnowledgeBase, rounds: int = 10) -> list[float]:
    """Seconds from committing a published entry until a search finds it (the 0.2 s poller running)."""
    kb.sync.start(interval=0.2)
    latencies = []
    try:
        for i in range(rounds):
            key = f"bench_publish_{i}_{int(time.time() * 1000) % 100000}"
            question = f"can I order the limited edition item number {i} {key[-5:]}"
            with kb.sessions() as session:
                faq.create(session, FaqInput(key=key, category="bench", status="published", questions_en=[question],
                                             answer_en=f"Limited edition {i} is available."), author="benchmark")
                session.commit()
                committed = time.perf_counter()
            while True:
                passages = kb.search(question, "en", k=1).passages
                if passages and passages[0].key == key:
                    latencies.append(time.perf_counter() - committed)
                    break
                if time.perf_counter() - committed > 30:
                    latencies.append(float("inf"))
                    break
                time.sleep(0.01)
    finally:
        kb.sync.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--tune", action=argparse.BooleanOptionalAction, default=True,
                        help="search with the models tuned on the FAQ (kefu's default, KEFU_KB_TUNE); "
                        "tuned once, on the smallest FAQ, like the calibration")
    parser.add_argument("--tune-languages", default=",".join(tuning.LANGUAGES),
                        help="which languages' models to tune (en: as kefu did before Chinese could be tuned)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where the JSON goes (a trial run can keep the recorded one)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one query at a time, as the knowledge-base server runs
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m in MODES]
    queries = load_queries(QUERIES)
    report: dict = {"date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                    "queries": len(queries), "paraphrases": sum(1 for q in queries if q.get("faq_id") is not None),
                    "unanswerable": sum(1 for q in queries if q.get("faq_id") is None), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="kefu-kb-bench-") as tmp:
        work = Path(tmp)
        confidence = None
        tuned, kept = {}, None
        if args.tune:
            print(f"== tuning each language's model on the {min(sizes)}-entry FAQ", flush=True)
            metas = tuned_models(min(sizes), work, args.tune_languages.split(","))
            tuned = {language: str(work / meta["path"]) for language, meta in metas.items()}
            kept = {language: meta["config"]["variants"] for language, meta in metas.items()}
            report["tuning"] = {language: {k: meta[k] for k in ("base", "entries", "texts", "config", "seconds")}
                                for language, meta in metas.items()}
        for size in sorted(sizes):
            print(f"== {size} entries: indexing", flush=True)
            kb, seconds, rate = build(size, work, tuned)
            if confidence is None:  # calibrated once, on the smallest FAQ
                print("   calibrating the confidence model", flush=True)
                confidence = calibrate(kb.sessions, kb.embedders, work / "confidence", kept=kept)
            confidence.attach(kb.index)
            row: dict = {"entries": len(kb.index), "index_seconds": round(seconds, 1),
                         "entries_per_second": round(rate, 1), "modes": {}}
            for mode in modes:
                print(f"   {mode}", flush=True)
                summary = evaluate(kb.index, queries, lambda lang, m=mode: kb.threshold(lang, m), mode,
                                   ROOT / "reports" / "kb" / f"{size}-{mode}")
                row["modes"][mode] = summary
            latencies = publish_latency(kb)
            row["publish_to_searchable_s"] = {"p50": round(statistics.median(latencies), 3),
                                              "max": round(max(latencies), 3), "rounds": len(latencies)}
            report["sizes"][str(size)] = row
            print_table(report)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if not args.no_doc:
        write_doc(report)


def table(report: dict) -> list[str]:
    lines = ["| entries | mode | R@1 zh | R@1 en | R@5 | MRR | answered right | answered wrong | "
             "unanswerable refused | p50 ms | p95 ms |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, row in report["sizes"].items():
        for mode, s in row["modes"].items():
            lines.append(f"| {size} | {mode} | {s['zh']['recall_at_1']:.3f} | {s['en']['recall_at_1']:.3f} | "
                         f"{s['all']['recall_at_5']:.3f} | {s['all']['mrr']:.3f} | {s['all']['answered_correctly']:.3f} | "
                         f"{s['all']['answered_wrongly']:.3f} | {s['all']['unanswerable_refusal_recall']:.3f} | "
                         f"{s['latency_ms']['p50']:.1f} | {s['latency_ms']['p95']:.1f} |")
    return lines


def print_table(report: dict) -> None:
    print("\n".join(table(report)))
    for size, row in report["sizes"].items():
        print(f"{size} entries: indexed in {row['index_seconds']} s; publish to searchable p50 "
              f"{row['publish_to_searchable_s']['p50']} s, max {row['publish_to_searchable_s']['max']} s")


def blend_note(config: dict) -> str:
    share = config.get("blend", 1.0)
    return f"; kept: {share:g} of the tuned weights, {1 - share:.2g} of the base model's" if share < 1 else ""


def tuning_note(report: dict) -> str:
    tuned = report.get("tuning")
    if not tuned:
        return "The packaged models, untuned (`--no-tune`)."
    parts = [f"{tuning.NAMES[language]}: {meta['base']} tuned on the {meta['entries']}-entry FAQ's first "
             f"{meta['config']['variants']} question variants and answers ({meta['config']['epochs']} epochs, "
             f"{meta['seconds']} s{blend_note(meta['config'])})" for language, meta in tuned.items()]
    untuned = [tuning.NAMES[language] for language in tuning.LANGUAGES if language not in tuned]
    return ("; ".join(parts) + ", as `kefu kb tune` does; calibration holds out only the other variants."
            + (f" {', '.join(untuned)}: untuned." if untuned else ""))


def write_doc(report: dict) -> None:
    lines = table(report)
    extra = [f"- {size} entries: indexing took {row['index_seconds']} s ({row['entries_per_second']} entries/s); "
             f"publish → searchable p50 {row['publish_to_searchable_s']['p50']} s, max "
             f"{row['publish_to_searchable_s']['max']} s over {row['publish_to_searchable_s']['rounds']} publishes"
             for size, row in report["sizes"].items()]
    write_section("kb", "## Knowledge-base retrieval (`benchmarks/kb.py`)\n\n"
                  f"{report['date']}, {report['machine']}; {report['queries']} queries "
                  f"(`benchmarks/data/kb_queries.jsonl`: {report['paraphrases']} paraphrases of the demo FAQ, "
                  f"{report['unanswerable']} unanswerable). "
                  "R@k: the right entry among the first k; answered right/wrong: after the calibrated confidence "
                  "threshold; p50/p95: one query at a time (on one thread; a 12-layer int8 model such as all-mpnet-base-v2 encodes on two). " + tuning_note(report) + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(extra))


if __name__ == "__main__":
    main()
