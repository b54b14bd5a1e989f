"""Building blocks for configuration models: strictness and secrets.

Every section of the YAML file is a :class:`StrictModel`: unknown keys are rejected and
values are immutable once loaded. Secrets never live in the YAML: a secret field takes a
reference, ``{env: NAME}`` or ``{file: PATH}``, resolved when the file is loaded, so a
config file in git holds no password.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _resolve_secret(value: Any) -> Any:
    """Turn ``{env: NAME}`` / ``{file: PATH}`` into the secret's text.

    A literal string is refused on purpose: it would mean a password in a file that ends
    up in git. ``SecretStr`` values (a model built in code, for example by the demo) pass.
    """
    if value is None or isinstance(value, SecretStr):
        return value
    if isinstance(value, dict):
        keys = set(value)
        if keys in ({"env"}, {"env", "optional"}):
            name = str(value["env"])
            if name not in os.environ:
                if value.get("optional"):
                    return None
                raise ValueError(f"environment variable {name} is not set")
            return os.environ[name]
        if keys == {"file"}:
            path = Path(str(value["file"]))
            try:
                return path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
    raise ValueError("a secret must be {env: NAME} or {file: PATH}, never written in the YAML")


#: A secret value: written in YAML as ``{env: NAME}`` or ``{file: PATH}``.
Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
#: An optional secret: ``None`` when the key is absent or the env reference is optional.
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_resolve_secret)]


_QUERY_SECRETS = {"password", "pwd", "passwd", "sslpassword"}
_ODBC_SECRET = re.compile(r"(?:^|;)\s*(pwd|password)\s*=", re.IGNORECASE)


def url_without_password(url: str) -> str:
    """``url`` as is, or ``ValueError`` when it carries a password.

    A password in a URL ends up in the YAML, in ``check-config`` output and in logs; the
    secret goes in the section's ``password`` as ``{env: NAME}`` or ``{file: PATH}``.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url  # not a URL this check can read; the connect reports it
    query = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if password is not None or query & _QUERY_SECRETS:
        raise ValueError(
            "a password in the URL is refused: give it as password: {env: NAME} or {file: PATH}"
        )
    return url


def odbc_without_password(connection_string: str) -> str:
    """``connection_string`` as is, or ``ValueError`` when it holds ``PWD=``/``Password=``."""
    if _ODBC_SECRET.search(connection_string):
        raise ValueError(
            "a password in the connection string is refused: give it as "
            "password: {env: NAME} or {file: PATH} (appended as PWD=...)"
        )
    return connection_string


def type_tag(model: type[BaseModel]) -> str:
    """The ``type:`` value a tagged model declares as ``type: Literal["..."]``.

    The Literal is where a rule type's or a source's name is written; registries read it
    from there instead of writing the name a second time.

    Raises:
        TypeError: the model has no ``type`` field of one string Literal.
    """
    field = model.model_fields.get("type")
    args = get_args(field.annotation) if field is not None else ()
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f'{model.__name__} declares no type: Literal["..."] field')
    return args[0]
