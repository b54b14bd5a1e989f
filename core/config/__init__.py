"""Load, validate and print the configuration file.

``load_config`` reads one YAML file and validates it with :class:`RepsysConfig`. Every
error is a :class:`core.errors.ConfigError` whose text is ``FILE: key.path: reason``, so an
operator sees at once which key of which file is wrong; the CLI prints it and exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from core.config.base import OptionalSecret, Secret, StrictModel
from core.config.machines import Machine
from core.config.model import RepsysConfig
from core.errors import ConfigError

__all__ = [
    "ConfigError",
    "Machine",
    "OptionalSecret",
    "RepsysConfig",
    "Secret",
    "StrictModel",
    "dump_config",
    "format_loc",
    "load_config",
    "parse_config",
]

#: Pydantic's messages for the common cases, said the way an operator reads them.
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def format_loc(loc: Sequence[int | str]) -> str:
    """``("machines", 0, "id")`` → ``machines[0].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _operator_path(data: Any, loc: Sequence[int | str]) -> list[int | str]:
    """The key path as the operator wrote it.

    Pydantic puts a discriminated union's tag in the location (``rules[0].counter_jump.
    factr`` for ``{type: counter_jump, factr: 1}``): the tag is a *value* the operator
    wrote, not a key, so walking the input, a location part that is not a key of the
    mapping but one of its values is dropped; so are validator wrappers (``function-…``).
    """
    path: list[int | str] = []
    current = data
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if isinstance(current, Mapping) and part not in current and part in current.values():
            continue
        path.append(part)
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = None
    return path


def _first_error(exc: ValidationError, data: Any) -> tuple[str, str]:
    err = exc.errors(include_url=False)[0]
    loc = _operator_path(data, err["loc"])
    msg = _MESSAGES.get(err["type"], err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return format_loc(loc), msg


def parse_config(data: Any, *, file: str = "<config>") -> RepsysConfig:
    """Validate already-parsed YAML data. Raises :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("the top level must be a mapping of sections", file=file)
    try:
        return RepsysConfig.model_validate(data)
    except ValidationError as exc:
        path, msg = _first_error(exc, data)
        raise ConfigError(msg, file=file, path=path) from exc


def load_config(path: str | Path) -> RepsysConfig:
    """Read and validate a YAML configuration file. Raises :class:`ConfigError`."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", file=file, path=where) from exc
    return parse_config(data, file=file)


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "********"
    if isinstance(value, StrictModel):
        # A field spelled differently in YAML (``continue``) is printed as written there.
        fields = type(value).model_fields
        return {(f.alias or k): _mask(getattr(value, k)) for k, f in fields.items()}
    if isinstance(value, Mapping):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def dump_config(config: RepsysConfig) -> str:
    """The normalized configuration as YAML, every default filled in, secrets masked."""
    masked = json.loads(json.dumps(_mask(config), default=str))
    return yaml.safe_dump(masked, sort_keys=False, default_flow_style=False)
