"""Reading ``ONDUTY_*`` settings from the environment: one parser per value type, errors that name the variable.

Components call these from their ``Settings.from_env()``; nothing reads the environment at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PREFIX = "ONDUTY_"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class SettingsError(ValueError):
    """A setting has a value the program cannot use; the message names the variable."""


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(PREFIX + name, default)


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, str(default), environ)
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    raw = env_str(name, str(default), environ)
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}={raw!r} is not a number") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, "true" if default else "false", environ).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{PREFIX}{name}={raw!r} is not a boolean (use true or false)")


def env_list(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list; blanks dropped."""
    return [item.strip() for item in env_str(name, default, environ).split(",") if item.strip()]


def kafka_bootstrap(environ: Mapping[str, str] | None = None) -> str:
    """The broker address every component uses (``ONDUTY_KAFKA_BOOTSTRAP``)."""
    return env_str("KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP, environ)


_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """``"15m"`` -> 900000. Units: ms, s, m, h, d; a bare number is milliseconds."""
    raw = text.strip().lower()
    for unit in ("ms", "s", "m", "h", "d"):
        number = raw[: -len(unit)]
        if raw.endswith(unit) and number.isdigit():
            # "ms" is tried before "s" so "500ms" is not read as 500 m + "s"
            return int(number) * _DURATION_UNITS_MS[unit]
    if raw.isdigit():
        return int(raw)
    raise ValueError(f"{text!r} is not a duration (use e.g. 500ms, 30s, 15m, 1h, 1d)")


def format_duration(ms: int) -> str:
    """900000 -> ``"15m"``: the largest unit that divides ``ms`` exactly."""
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_UNITS_MS[unit]
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def env_duration_ms(name: str, default: str, environ: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, default, environ)
    try:
        return parse_duration_ms(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name}: {exc}") from None


def env_durations_ms(name: str, default: str, environ: Mapping[str, str] | None = None) -> list[int]:
    """A comma-separated list of durations, e.g. ``15m,1h,1d``."""
    try:
        return [parse_duration_ms(item) for item in env_list(name, default, environ)]
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name}: {exc}") from None
