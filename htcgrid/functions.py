"""Deployed worker functions: immutable, hashed package versions kept in the data plane.

Layout (built by ``htcgrid.dataplane.keys``)::

    functions/_catalog.json          {"names": [...]}
    functions/<name>/index.json      {"name", "current", "versions": [FunctionVersion, ...]}
    functions/<name>/<version>.zip   the package, exactly as uploaded

Living in the data plane, the registry works on every backend without a task-store change.
Two deploys of one name at the same instant may both pick the same version number; the
later index write wins and its package is the one recorded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import GridError, NotFound, ValidationError
from htcgrid.models import NAME_PATTERN

RUNTIMES = ("python", "provided")


class PackageCorrupt(GridError):
    """A package's bytes do not match the sha256 recorded when it was deployed."""

    code = "package_corrupt"


@dataclass(frozen=True)
class FunctionVersion:
    name: str
    version: int
    handler: str
    runtime: str = "python"
    sha256: str = ""
    size_bytes: int = 0
    timeout_seconds: float | None = None
    memory_mb: int = 0
    created_at: float = 0.0

    @property
    def package_key(self) -> str:
        return keys.function_package(self.name, self.version)


@dataclass(frozen=True)
class FunctionRecord:
    name: str
    current: int
    versions: tuple[FunctionVersion, ...]

    def version(self, number: int) -> FunctionVersion:
        for found in self.versions:
            if found.version == number:
                return found
        raise NotFound(f"function {self.name!r} has no version {number}")

    @property
    def current_version(self) -> FunctionVersion:
        return self.version(self.current)


class FunctionRegistry:
    def __init__(self, data: DataPlane, clock: Callable[[], float] = time.time) -> None:
        self.data = data
        self.clock = clock

    def deploy(
        self,
        name: str,
        package: bytes,
        handler: str,
        runtime: str = "python",
        timeout_seconds: float | None = None,
        memory_mb: int = 0,
    ) -> FunctionVersion:
        """Store ``package`` as the next version of ``name`` and make it current."""
        _validate(name, handler, runtime)
        old = self._load(name)
        number = max((v.version for v in old.versions), default=0) + 1 if old else 1
        deployed = FunctionVersion(
            name,
            number,
            handler,
            runtime,
            hashlib.sha256(package).hexdigest(),
            len(package),
            timeout_seconds,
            memory_mb,
            self.clock(),
        )
        self.data.put(deployed.package_key, package)
        versions = (old.versions if old else ()) + (deployed,)
        self._save(FunctionRecord(name, number, versions))
        if old is None:
            self._add_name(name)
        return deployed

    def rollback(self, name: str, version: int) -> FunctionVersion:
        """Make an earlier (or any existing) version current again."""
        record = self.record(name)
        chosen = record.version(version)
        self._save(FunctionRecord(name, version, record.versions))
        return chosen

    def names(self) -> list[str]:
        try:
            raw = self.data.get(keys.function_catalog())
        except NotFound:
            return []
        return sorted(json.loads(raw)["names"])

    def record(self, name: str) -> FunctionRecord:
        found = self._load(name)
        if found is None:
            raise NotFound(f"no function named {name!r} has been deployed")
        return found

    def current(self, name: str) -> FunctionVersion | None:
        """The version tasks of ``name`` should run now, or None if it has no package."""
        found = self._load(name) if NAME_PATTERN.fullmatch(name) else None
        return found.current_version if found else None

    def package(self, version: FunctionVersion) -> bytes:
        """The package bytes, checked against the recorded sha256."""
        data = self.data.get(version.package_key)
        if hashlib.sha256(data).hexdigest() != version.sha256:
            raise PackageCorrupt(
                f"package {version.name} v{version.version} does not match its sha256"
            )
        return data

    def _load(self, name: str) -> FunctionRecord | None:
        try:
            raw = json.loads(self.data.get(keys.function_index(name)))
        except NotFound:
            return None
        versions = tuple(FunctionVersion(**v) for v in raw["versions"])
        return FunctionRecord(raw["name"], raw["current"], versions)

    def _save(self, record: FunctionRecord) -> None:
        body = {
            "name": record.name,
            "current": record.current,
            "versions": [asdict(v) for v in record.versions],
        }
        self.data.put(keys.function_index(record.name), json.dumps(body, indent=1).encode())

    def _add_name(self, name: str) -> None:
        names = set(self.names()) | {name}
        self.data.put(keys.function_catalog(), json.dumps({"names": sorted(names)}).encode())


def _validate(name: str, handler: str, runtime: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(f"function names are letters, digits, '.', '_', '-': {name!r}")
    if runtime not in RUNTIMES:
        raise ValidationError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "python" and not handler:
        raise ValidationError("a python function needs a handler (module.function)")


# ---- packages on disk ------------------------------------------------------------------


def read_package(path: Path) -> bytes:
    """A zip file's bytes, or a directory zipped the way ``zip -yr`` does it."""
    if path.is_dir():
        return zip_directory(path)
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValidationError(f"{path} is neither a directory nor a zip file")
    return data


def zip_directory(root: Path) -> bytes:
    """Zip ``root``'s contents, keeping file modes and storing symlinks as links."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for filename in sorted(files) + [d for d in dirs if (Path(folder) / d).is_symlink()]:
                _add(archive, Path(folder) / filename, root)
    return buffer.getvalue()


def _add(archive: zipfile.ZipFile, path: Path, root: Path) -> None:
    name = path.relative_to(root).as_posix()
    mode = os.lstat(path).st_mode
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (mode & 0xFFFF) << 16
    if stat.S_ISLNK(mode):
        archive.writestr(info, os.readlink(path))
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, path.read_bytes())


def unpack(package: bytes, target: Path) -> None:
    """Extract a package into ``target``, restoring modes and links; refuses escaping paths."""
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        for info in archive.infolist():
            dest = _inside(target, info.filename)
            mode = info.external_attr >> 16
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                link = archive.read(info).decode()
                _inside(dest.parent, link)
                os.symlink(link, dest)
                continue
            dest.write_bytes(archive.read(info))
            if mode & 0o777:
                dest.chmod(mode & 0o777)


def _inside(root: Path, name: str) -> Path:
    resolved = (root / name).resolve()
    if not resolved.is_relative_to(root.resolve()) or os.path.isabs(name):
        raise ValidationError(f"package entry escapes its folder: {name!r}")
    return root / name


# ---- HTC-Grid's grid configuration -----------------------------------------------------


def handler_from_config(config: Mapping[str, Any]) -> str | None:
    """``agent_configuration.lambda.lambda_handler_file_name`` + ``…_function_name``."""
    section = config.get("agent_configuration", {}).get("lambda", {})
    module = section.get("lambda_handler_file_name")
    if not module:
        return None
    module = str(module).removesuffix(".py")
    return f"{module}.{section.get('lambda_handler_function_name') or 'lambda_handler'}"
