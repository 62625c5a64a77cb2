"""The tasks of ``htcgrid submit``: a file (or stdin) holding a JSON list or JSON lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from htcgrid.errors import ValidationError

SOURCE_HINT = "give a file of tasks (a JSON list, or JSON lines) or '-' for stdin"
DEPS_HINT = "give --deps a file with one list of dependencies per task (a JSON list, or JSON lines)"


def read_tasks(source: str, hint: str = SOURCE_HINT) -> list[Any]:
    """The tasks in SOURCE (or, with ``DEPS_HINT``, the dependencies of each task); every
    problem with it is a ``ValidationError`` naming it and saying what to give."""
    name = "stdin" if source == "-" else source
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except FileNotFoundError:
        raise ValidationError(f"{source}: no such file; {hint}") from None
    except IsADirectoryError:
        raise ValidationError(f"{source} is a directory; {hint}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{name}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); save it as UTF-8"
        ) from None
    stripped = text.strip()
    if not stripped:
        raise ValidationError(f"{name} is empty; {hint}")
    if stripped.startswith("["):
        try:
            return list(json.loads(stripped))
        except json.JSONDecodeError as exc:
            first = stripped[: exc.pos]  # the first value, whole, and the space after it
            if exc.msg != "Extra data" or "\n" in first.rstrip() or "\n" not in first:
                raise ValidationError(f"{name}: not valid JSON: {exc}") from None
            # the first line is a whole list and more lines follow: JSON lines
        except RecursionError:
            raise ValidationError(f"{name}: JSON nested too deeply; flatten the task") from None
    return [
        parse_json(line, f"{name}:{number}")
        for number, line in enumerate(stripped.splitlines(), 1)
        if line.strip()
    ]


def parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{where}: not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationError(f"{where}: JSON nested too deeply; flatten the task") from None
