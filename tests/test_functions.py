"""The function registry in the data plane, packages on disk, and the deploy commands."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import threading
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from htcgrid.cli import main
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import NotFound, PackageCorrupt, UnknownFunction, ValidationError
from htcgrid.functions import (
    FunctionRegistry,
    handler_from_config,
    read_package,
    unpack,
    zip_directory,
)
from htcgrid.store import open_store


def make_dir(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    (root / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "bootstrap").write_text("#!/bin/sh\necho hi\n")
    (root / "bootstrap").chmod(0o755)
    os.symlink("pkg", root / "alias")
    return root


def test_versions_are_immutable_hashed_and_current_moves(tmp_path: Path) -> None:
    registry = FunctionRegistry(open_data_plane(f"file://{tmp_path / 'blobs'}"), clock=lambda: 7.0)
    one = registry.deploy("pricing", b"zip-one", "handler.lambda_handler")
    two = registry.deploy("pricing", b"zip-two", "handler.other", timeout_seconds=5, memory_mb=512)
    assert (one.version, two.version) == (1, 2)
    assert one.sha256 == hashlib.sha256(b"zip-one").hexdigest()
    assert registry.current("pricing") == two
    assert registry.package(one) == b"zip-one"
    assert registry.rollback("pricing", 1) == one
    assert registry.current("pricing") == one
    assert [v.version for v in registry.record("pricing").versions] == [1, 2]
    registry.deploy("other", b"x", "m.f")
    assert registry.names() == ["other", "pricing"]
    assert registry.current("missing") is None
    with pytest.raises(NotFound):
        registry.rollback("pricing", 9)
    with pytest.raises(ValidationError):
        registry.deploy("bad/name", b"x", "m.f")
    with pytest.raises(ValidationError):
        registry.deploy("f", b"x", "m.f", runtime="java")


def test_a_tampered_package_is_refused(tmp_path: Path) -> None:
    data = open_data_plane(f"file://{tmp_path / 'blobs'}")
    registry = FunctionRegistry(data)
    version = registry.deploy("f", b"good", "m.f")
    data.put(version.package_key, b"evil")
    with pytest.raises(PackageCorrupt):
        registry.package(version)


def test_directories_zip_with_modes_and_links_and_unpack_back(tmp_path: Path) -> None:
    source = make_dir(tmp_path / "src")
    package = zip_directory(source)
    assert read_package(source) == package
    out = tmp_path / "out"
    unpack(package, out)
    assert (out / "handler.py").read_text() == (source / "handler.py").read_text()
    assert os.access(out / "bootstrap", os.X_OK)
    assert os.readlink(out / "alias") == "pkg"
    assert (out / "alias" / "__init__.py").read_text() == "VALUE = 1\n"


def test_unpack_refuses_escaping_entries(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.py", "x = 1")
    with pytest.raises(ValidationError):
        unpack(buffer.getvalue(), tmp_path / "out")
    assert not (tmp_path / "evil.py").exists()


def test_htc_grid_config_names_the_handler() -> None:
    config = {
        "agent_configuration": {
            "lambda": {
                "lambda_handler_file_name": "portfolio_pricing_engine",
                "lambda_handler_function_name": "lambda_handler",
            }
        }
    }
    assert handler_from_config(config) == "portfolio_pricing_engine.lambda_handler"
    assert handler_from_config({}) is None


def test_cli_deploy_list_and_rollback(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    source = make_dir(tmp_path / "src")
    deploy = ["deploy", "pricing", str(source), "--handler", "handler.f", "--url", url]
    nowhere = CliRunner().invoke(main, deploy)
    assert nowhere.exit_code == 1 and "no grid at" in nowhere.output
    open_store(url).close()
    config = tmp_path / "grid_config.json"
    config.write_text(
        json.dumps({"agent_configuration": {"lambda": {"lambda_handler_file_name": "handler"}}})
    )
    runner = CliRunner()
    first = runner.invoke(
        main, ["deploy", "pricing", str(source), "--config", str(config), "--url", url]
    )
    assert first.exit_code == 0, first.output
    assert first.output.startswith("pricing v1 sha256:")
    archive = tmp_path / "lambda.zip"
    archive.write_bytes(zip_directory(source))
    second = runner.invoke(
        main,
        ["deploy", "pricing", str(archive), "--handler", "handler.lambda_handler", "--url", url],
    )
    assert second.exit_code == 0, second.output
    listing = runner.invoke(main, ["functions", "--url", url])
    lines = listing.output.splitlines()
    assert len(lines) == 2 and lines[1].startswith("* pricing")
    assert "handler.lambda_handler" in lines[0]
    back = runner.invoke(main, ["function", "rollback", "pricing", "1", "--url", url])
    assert back.exit_code == 0 and "v1 is current" in back.output
    assert runner.invoke(main, ["functions", "--url", url]).output.startswith("* pricing")
    missing = runner.invoke(main, ["deploy", "f", str(source), "--url", url])
    assert missing.exit_code != 0 and "--handler" in missing.output


def _deploy_many(url: str, tag: str, count: int) -> list[int]:
    registry = FunctionRegistry(open_data_plane(url))
    return [registry.deploy("racy", f"{tag}-{i}".encode(), "m.f").version for i in range(count)]


def _deploy_in_process(url: str, tag: str, out: multiprocessing.Queue[list[int]]) -> None:
    out.put(_deploy_many(url, tag, 8))


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_concurrent_deploys_never_share_a_version(tmp_path: Path, kind: str) -> None:
    url = f"file://{tmp_path / 'blobs'}" if kind == "file" else f"sqlite://{tmp_path / 'g.db'}"
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[int]] = ctx.Queue()
    procs = [ctx.Process(target=_deploy_in_process, args=(url, t, out)) for t in ("p", "q")]
    for p in procs:
        p.start()
    threads_won: list[int] = []
    workers = [
        threading.Thread(target=lambda t=t: threads_won.extend(_deploy_many(url, t, 8)))
        for t in ("a", "b")
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    taken = threads_won + [n for _ in procs for n in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert sorted(taken) == list(range(1, 33))
    registry = FunctionRegistry(open_data_plane(url))
    record = registry.record("racy")
    assert [v.version for v in record.versions] == list(range(1, 33))
    for version in record.versions:
        assert hashlib.sha256(registry.package(version)).hexdigest() == version.sha256
    assert registry.names() == ["racy"]


def test_delete_forgets_every_version_and_unknown_names_are_refused(tmp_path: Path) -> None:
    now = [100.0]
    registry = FunctionRegistry(open_data_plane("memory://"), clock=lambda: now[0])
    registry.require("default")
    with pytest.raises(UnknownFunction, match="deployed: none yet"):
        registry.require("pricing")
    registry.deploy("pricing", b"zip", "m.f")
    registry.require("pricing")
    with pytest.raises(UnknownFunction, match="deployed: pricing"):
        registry.require("pricingg")
    registry.delete("pricing")
    now[0] += 5
    with pytest.raises(UnknownFunction):
        registry.require("pricing")
    assert registry.names() == [] and registry.current("pricing") is None
    assert registry.deploy("pricing", b"again", "m.f").version == 1
    with pytest.raises(NotFound):
        registry.delete("nothing")
