"""Shared fixtures. ``stack`` starts the real processes (NLU server, action server, Rasa,
gateway...) from the Procfile with honcho, on free ports, against a copy of the demo shop
(tests/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.settings import PROJECT_ROOT
from tests.stack import Stack, StackMissing, running_stack

OUTPUT_DIR = PROJECT_ROOT / "test-output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Iterator[Stack]:
    try:
        with running_stack(tmp_path_factory.mktemp("stack"), output_dir / "stack.log") as running:
            yield running
    except StackMissing as error:
        pytest.fail(str(error))
