"""The instruction-count suite reads callgrind's dumps and names each process's role."""

from __future__ import annotations

from pathlib import Path

from bench.instructions import count, role_of

MAIN = b"""# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 100
cmd:  .venv/bin/python -m celery -A worker worker -Q default
part: 1

events: Ir

summary: 1000
"""
CHILD = MAIN.replace(b"pid: 100", b"pid: 101").replace(b"summary: 1000", b"summary: 300")
EXPORT = (
    MAIN.replace(b"pid: 100", b"pid: 102")
    .replace(
        b"-m celery -A worker worker -Q default", b"-m telemetry.tracing.export.process --fd 7"
    )
    .replace(b"summary: 1000", b"totals: 50")
)


def test_each_process_dump_counts_for_its_role(tmp_path: Path) -> None:
    # The zeroing dump has no number; each later dump is numbered, and the last counts
    (tmp_path / "cg.100.1").write_bytes(MAIN)
    (tmp_path / "cg.101.1").write_bytes(CHILD)
    (tmp_path / "cg.102.1").write_bytes(EXPORT)
    (tmp_path / "cg.100").write_bytes(MAIN.replace(b"1000", b"7"))  # written at exit: ignored
    assert count(tmp_path, 100, [100, 101, 102]) == {"main": 1000, "child": 300, "export": 50}


def test_the_role_is_read_from_the_command_line() -> None:
    assert role_of(MAIN, 100, 100) == "main"
    assert role_of(CHILD, 101, 100) == "child"
    assert role_of(EXPORT, 102, 100) == "export"
