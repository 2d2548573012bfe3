"""Profiles: where the CLI finds the API and its token, in ~/.config/nubis/config.toml.

    current = "default"
    [profiles.default]
    api_url = "http://127.0.0.1:8765"
    token = "nubis_…"
    project = "web"

NUBIS_API_URL, NUBIS_TOKEN and NUBIS_PROJECT override the profile; NUBIS_PROFILE
chooses one. The file holds tokens, so it is written with mode 0600.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from nubis.errors import InvalidInput

DEFAULT_API_URL = "http://127.0.0.1:8765"
DEFAULT_PROFILE = "default"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nubis" / "config.toml"


@dataclass
class Profile:
    name: str
    api_url: str = DEFAULT_API_URL
    token: str | None = None
    project: str | None = None


@dataclass
class Config:
    current: str = DEFAULT_PROFILE
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Config:
        path = config_path()
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise InvalidInput(f"{path} is not valid TOML: {error}") from None
        return cls(
            current=str(data.get("current", DEFAULT_PROFILE)),
            profiles=dict(data.get("profiles", {})),
        )

    def save(self) -> None:
        path = config_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = tomli_w.dumps({"current": self.current, "profiles": self.profiles})
        partial = path.with_suffix(".toml.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(partial, 0o600)
        partial.replace(path)

    def profile(self, name: str | None = None) -> Profile:
        """The profile `name` (else NUBIS_PROFILE, else the current one), with the
        environment's overrides."""
        chosen = name or os.environ.get("NUBIS_PROFILE") or self.current
        stored = self.profiles.get(chosen, {})
        return Profile(
            name=chosen,
            api_url=os.environ.get("NUBIS_API_URL") or stored.get("api_url", DEFAULT_API_URL),
            token=os.environ.get("NUBIS_TOKEN") or stored.get("token"),
            project=os.environ.get("NUBIS_PROJECT") or stored.get("project"),
        )

    def update(self, name: str, **values: str | None) -> None:
        """Set (or, with None, remove) values of profile `name` and make it current."""
        stored = self.profiles.setdefault(name, {})
        for key, value in values.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value
        self.current = name
