"""Deployed worker functions: immutable, hashed package versions kept in the data plane.

Layout (built by ``htcgrid.dataplane.keys``)::

    functions/_catalog.json          {"names": [...]}                  (a Document)
    functions/<name>/index.json      {"name", "current", "versions"}   (a Document)
    functions/<name>/<version>.zip   the package, exactly as uploaded

A deploy first claims its version number by writing the package with ``put_if_absent``, so
two deploys of one name, even on two machines at one instant, never take the same number;
then it records the version in the index, a ``Document`` that loses no concurrent change.
Living in the data plane, the registry works on every backend without a task-store change.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from htcgrid.dataplane import DataPlane, keys
from htcgrid.dataplane.document import Document
from htcgrid.errors import NotFound, PackageCorrupt, UnknownFunction, ValidationError
from htcgrid.models import DEFAULT_FUNCTION, NAME_PATTERN
from htcgrid.pickled import PYTHON_FUNCTION

RUNTIMES = ("python", "provided")
NAMES_CACHE_SECONDS = 2.0


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def as_dict(self) -> dict[str, Any]:
        versions = [v.as_dict() for v in self.versions]
        return {"name": self.name, "current": self.current, "versions": versions}


def _record(raw: Any) -> FunctionRecord | None:
    if not raw:
        return None
    versions = tuple(FunctionVersion(**v) for v in raw["versions"])
    return FunctionRecord(raw["name"], raw["current"], versions)


class FunctionRegistry:
    def __init__(self, data: DataPlane, clock: Callable[[], float] = time.time) -> None:
        self.data = data
        self.clock = clock
        self._catalog = Document(data, keys.function_catalog())
        self._names_cache: tuple[float, frozenset[str]] = (-NAMES_CACHE_SECONDS, frozenset())

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
        number = self._claim(
            name, package, max((v.version for v in old.versions), default=0) if old else 0
        )
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

        def add(raw: Any) -> Any:
            versions = [*(raw["versions"] if raw else []), deployed.as_dict()]
            versions.sort(key=lambda v: int(v["version"]))
            return {"name": name, "current": number, "versions": versions}

        self._index(name).update(add)
        self._catalog.update(lambda raw: {"names": sorted({*(raw or {}).get("names", []), name})})
        return deployed

    def _claim(self, name: str, package: bytes, highest: int) -> int:
        """The first free version number above ``highest``, taken by writing the package."""
        number = highest + 1
        while not self.data.put_if_absent(keys.function_package(name, number), package):
            number += 1
        return number

    def rollback(self, name: str, version: int) -> FunctionVersion:
        """Make an earlier (or any existing) version current again."""

        def choose(raw: Any) -> Any:
            record = _record(raw)
            if record is None:
                raise NotFound(f"no function named {name!r} has been deployed")
            record.version(version)
            return {**raw, "current": version}

        chosen = _record(self._index(name).update(choose))
        assert chosen is not None
        return chosen.current_version

    def delete(self, name: str) -> None:
        """Forget ``name``: every version and package. Raises NotFound if it is unknown."""
        self.record(name)
        self._catalog.update(
            lambda raw: {"names": sorted(set((raw or {}).get("names", [])) - {name})}
        )
        self.data.delete_prefix(keys.function_index(name).rsplit("/", 1)[0] + "/")
        self._names_cache = (-NAMES_CACHE_SECONDS, frozenset())

    def names(self) -> list[str]:
        raw = self._catalog.read()
        return sorted(raw["names"]) if raw else []

    def require(self, name: str) -> None:
        """Raise UnknownFunction unless ``name`` is the default or deployed. Known names are
        remembered for a moment, so a busy submit path reads the catalog rarely."""
        if name in (DEFAULT_FUNCTION, PYTHON_FUNCTION):  # built in, never deployed
            return
        checked_at, known = self._names_cache
        if name in known and self.clock() - checked_at < NAMES_CACHE_SECONDS:
            return
        names = self.names()
        self._names_cache = (self.clock(), frozenset(names))
        if name not in names:
            deployed = ", ".join(names) if names else "none yet"
            raise UnknownFunction(
                f"no function named {name!r} is deployed (deployed: {deployed}); "
                f"deploy it with `htcgrid deploy {name} …` or submit to {DEFAULT_FUNCTION!r}"
            )

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

    def _index(self, name: str) -> Document:
        return Document(self.data, keys.function_index(name))

    def _load(self, name: str) -> FunctionRecord | None:
        return _record(self._index(name).read())


def _validate(name: str, handler: str, runtime: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(f"function names are letters, digits, '.', '_', '-': {name!r}")
    if name == PYTHON_FUNCTION:
        raise ValidationError(f"{name!r} is built in (pickled Python calls): choose another name")
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
