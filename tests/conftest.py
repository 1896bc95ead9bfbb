"""Shared fixtures. ``stack`` starts the real processes (NLU server, action server, Rasa,
gateway...) from the Procfile with honcho, on free ports, against a copy of the demo shop
(tests/stack.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.settings import PROJECT_ROOT
from tests.stack import Stack, StackMissing, running_stack, scaleout_stack

OUTPUT_DIR = PROJECT_ROOT / "test-output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


SHAPES = {"embedded": (running_stack, "stack.log"), "scaleout": (scaleout_stack, "scaleout-stack.log")}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Iterator[Stack]:
    """The stack in the shape KEFU_TEST_SHAPE names: ``embedded`` (the default: `make run`'s
    Procfile, SQLite, embedded Chroma) or ``scaleout`` (Procfile.scaleout: two Rasa replicas,
    PostgreSQL, Redis, a Chroma server; tests/test_scaleout.py runs the main end-to-end tests so)."""
    shape = os.environ.get("KEFU_TEST_SHAPE", "embedded")
    if shape not in SHAPES:
        pytest.fail(f"KEFU_TEST_SHAPE={shape!r}; known shapes: {', '.join(SHAPES)}")
    start, log_name = SHAPES[shape]
    try:
        with start(tmp_path_factory.mktemp("stack"), output_dir / log_name) as running:
            yield running
    except StackMissing as error:
        pytest.fail(str(error))
