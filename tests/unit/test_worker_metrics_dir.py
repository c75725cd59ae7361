"""The worker's metrics directory: a launcher's is emptied at start (a previous run's counts
must not add to this one's); a process that already loaded prometheus_client is left alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers import multiproc


def test_a_given_directory_is_emptied_of_a_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_4242.db").write_bytes(b"old counts")
    (tmp_path / "histogram_4243.db").write_bytes(b"old counts")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv(multiproc.ENV, str(tmp_path))

    assert multiproc.prepare() == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_too_late_once_prometheus_client_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import prometheus_client  # noqa: F401 - loaded, as in any process that imported the app

    monkeypatch.delenv(multiproc.ENV, raising=False)
    assert multiproc.prepare() is None
    assert multiproc.ENV not in os.environ
