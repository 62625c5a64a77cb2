"""Every error a user can cause is one line on stderr, a non-zero exit code and no traceback;
``--debug`` (or ``HTCGRID_DEBUG=1``) shows the traceback instead."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from htcgrid.cli import main


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Path], list[str]]  # given a prepared folder
    code: int
    says: str
    stdin: bytes | None = None
    subprocess: bool = False  # commands that bind sockets or own signals run for real
    leaves_no: str = ""  # a path (under the folder) that must not exist afterwards


def _file(name: str, content: bytes) -> Callable[[Path], list[str]]:
    def args(folder: Path) -> list[str]:
        (folder / name).write_bytes(content)
        return ["submit", str(folder / name), "--url", "memory://"]

    return args


DEEP = b"[" * 100_000 + b"]" * 100_000

CASES = [
    Case(
        "submit: no such file",
        lambda d: ["submit", str(d / "nope.json"), "--url", "memory://"],
        1,
        "no such file",
    ),
    Case(
        "submit: a directory",
        lambda d: ["submit", str(d), "--url", "memory://"],
        1,
        "is a directory",
    ),
    Case(
        "submit: no such deps file",
        lambda d: [*_file("two.json", b"[1, 2]")(d), "--deps", str(d / "nope.json")],
        1,
        "no such file; give --deps a file with one list of dependencies per task",
    ),
    Case("submit: not UTF-8", _file("latin1.json", '["café"]'.encode("latin-1")), 1, "not UTF-8"),
    Case("submit: lone surrogate", _file("sur.json", b'["\\ud800"]'), 1, "lone surrogate \\ud800"),
    Case("submit: nested too deep", _file("deep.json", DEEP), 1, "nested too deeply"),
    Case("submit: not JSON", _file("bad.json", b"[1, 2"), 1, "not valid JSON"),
    Case("submit: empty list", _file("empty.json", b"[]"), 1, "tasks: at least one task is needed"),
    Case("submit: empty file", _file("blank.json", b"\n"), 1, "is empty"),
    Case(
        "submit: stdin not UTF-8",
        lambda d: ["submit", "--url", "memory://"],
        1,
        "stdin: not UTF-8",
        stdin=b"\xff\xfe[1]",
    ),
    Case(
        "submit: bad option value",
        lambda d: ["submit", "--priority", "11", "--url", "memory://"],
        2,
        "see `htcgrid submit --help`",
        stdin=b"[1]",
    ),
    Case(
        "user add: a short password",
        lambda d: ["user", "add", "x", "--password", "short", "--url", f"sqlite://{d / 'u.db'}"],
        1,
        "password must be",
    ),
    Case("an unknown option", lambda d: ["--bogus"], 2, "see `htcgrid --help`"),
    Case("an unknown command", lambda d: ["bogus"], 2, "No such command 'bogus'"),
    Case("status: unknown session", lambda d: ["status", "nope", "--url", "memory://"], 1, "nope"),
    Case(
        "up: data dir under a file",
        lambda d: ["up", "--port", "0", "--agents", "0", "--data-dir", str(d / "file" / "grid")],
        1,
        "choose a --data-dir",
        subprocess=True,
    ),
    Case(
        "up: port in use",
        lambda d: ["up", "--port", str(_busy_port(d)), "--agents", "0", "--data-dir", str(d / "g")],
        1,
        "choose another --port",
        subprocess=True,
        leaves_no="g",
    ),
    Case(
        "server: a task store it cannot create",
        lambda d: ["server", "--port", "0", "--url", f"sqlite://{d / 'file' / 'grid.db'}"],
        1,
        "cannot open the task store",
        subprocess=True,
    ),
    Case(
        "server: port in use",
        lambda d: ["server", "--port", str(_busy_port(d)), "--url", f"sqlite://{d / 'grid.db'}"],
        1,
        "choose another --port",
        subprocess=True,
    ),
]

_HELD: list[socket.socket] = []


def _busy_port(folder: Path) -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _HELD.append(sock)
    return int(sock.getsockname()[1])


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "file").write_text("not a folder")
    yield tmp_path
    while _HELD:
        _HELD.pop().close()


def run(args: list[str], stdin: bytes | None, real: bool, *debug: str) -> tuple[int, str, str]:
    if real:
        done = subprocess.run(
            [sys.executable, "-m", "htcgrid", *debug, *args],
            input=stdin,
            capture_output=True,
            timeout=60,
        )
        return done.returncode, done.stdout.decode(), done.stderr.decode()
    result = CliRunner().invoke(main, [*debug, *args], input=stdin, prog_name="htcgrid")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_line_and_an_exit_code(case: Case, folder: Path) -> None:
    code, stdout, stderr = run(case.args(folder), case.stdin, case.subprocess)
    assert code == case.code, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("htcgrid: ") and case.says in lines[0], lines[0]
    assert "Traceback" not in stderr and stdout == ""
    if case.leaves_no:
        assert not (folder / case.leaves_no).exists()


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_debug_shows_the_traceback(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["submit", str(tmp_path / "nope.json"), "--url", "memory://"]
    if how == "variable":
        monkeypatch.setenv("HTCGRID_DEBUG", "1")
    done = subprocess.run(
        [sys.executable, "-m", "htcgrid", *(["--debug"] if how == "flag" else []), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "no such file" in done.stderr


def test_exit_codes_are_documented() -> None:
    shown = CliRunner().invoke(main, ["--help"]).output
    for code in ("1 an error", "2 a usage", "4 some task failed", "5 some task was", "124"):
        assert code in " ".join(shown.split()), code
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "| 4 | some task failed" in readme and "| 5 | some task was cancelled" in readme


def test_the_empty_list_reads_the_same_over_http() -> None:
    from fastapi.testclient import TestClient

    from htcgrid.api import create_app
    from htcgrid.dataplane import open_data_plane
    from htcgrid.service import GridService
    from htcgrid.settings import SecurityConfig
    from htcgrid.store import open_store

    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    http = TestClient(create_app(service, None, None, SecurityConfig(auth=False)))
    answer = http.post("/v1/sessions", json={"tasks": []})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "tasks: at least one task is needed"
    surrogate = http.post(
        "/v1/sessions",
        content=b'{"tasks": ["\\ud800"]}',
        headers={"content-type": "application/json"},
    )
    assert surrogate.status_code == 400 and "lone surrogate" in surrogate.text
    assert json.loads(surrogate.text)["error"]["code"] == "invalid_request"
