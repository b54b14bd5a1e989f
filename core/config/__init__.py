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


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors(include_url=False)[0]
    # Discriminated unions add the tag to the location (``sources[0].mqtt.topic``); the
    # tag is a value, not a key the operator wrote, so it is dropped from the path.
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
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
        path, msg = _first_error(exc)
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
        return {k: _mask(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, Mapping):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def dump_config(config: RepsysConfig) -> str:
    """The normalized configuration as YAML, every default filled in, secrets masked."""
    masked = json.loads(json.dumps(_mask(config), default=str))
    return yaml.safe_dump(masked, sort_keys=False, default_flow_style=False)
