"""The user CLI as people use it: the real `nubis` command, in its own process, against a
real `nubis api` over each store.

Every command costs a fresh Python process, so commands that do not depend on each
other are started together and then awaited (`together`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyotp
import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from nubis.auth import accounts
from nubis.db import Database
from nubis.models import Membership, Project, SshKey, User
from tests.integration.cli.conftest import (
    Api,
    free_port,
    new_operator,
    nubis_command,
    nubis_environment,
)

PASSWORD = "correct horse battery"
COMMAND_SECONDS = 60.0
NOT_LOGGED_IN = "not logged in (profile {}): run `nubis login` or set NUBIS_TOKEN"
INVALID_TOKEN = "the token is not valid: unknown, expired or revoked"
VIEWER_REFUSED = "your role in project web is viewer; this needs {} or above"
ALICE, BOB = "alice@example.com", "bob@example.com"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The JSON a successful command printed."""
        assert self.returncode == 0, self
        assert self.stderr == "", self
        return json.loads(self.stdout)


class Running:
    def __init__(self, args: tuple[str, ...], process: subprocess.Popen[str]) -> None:
        self.args = args
        self.process = process

    def finish(self) -> Result:
        try:
            stdout, stderr = self.process.communicate(timeout=COMMAND_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            pytest.fail(f"`nubis {' '.join(self.args)}` took over {COMMAND_SECONDS} s")
        return Result(self.args, self.process.returncode, stdout, stderr)


class Cli:
    """`nubis` at one person's terminal: their own HOME and config directory."""

    def __init__(self, home: Path, **environment: str) -> None:
        self.home = home
        self.environment = nubis_environment(
            HOME=str(home / "home"), XDG_CONFIG_HOME=str(home / "config"), **environment
        )
        (home / "home").mkdir(parents=True)

    @property
    def config_path(self) -> Path:
        return self.home / "config" / "nubis" / "config.toml"

    def config(self) -> dict[str, Any]:
        return tomllib.loads(self.config_path.read_text())

    def popen(self, *args: str, stdin: Any, env: Mapping[str, str] | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*nubis_command(), *args],
            env={**self.environment, **(env or {})},
            cwd=self.home,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def start(self, *args: str, stdin: str = "", env: Mapping[str, str] | None = None) -> Running:
        """Start `nubis args…` with `stdin` as its whole input; `finish()` awaits it."""
        with tempfile.TemporaryFile() as source:
            source.write(stdin.encode())
            source.seek(0)
            return Running(args, self.popen(*args, stdin=source, env=env))

    def run(self, *args: str, stdin: str = "", env: Mapping[str, str] | None = None) -> Result:
        return self.start(*args, stdin=stdin, env=env).finish()


def together(*running: Running) -> list[Result]:
    """The results of commands started side by side."""
    return [command.finish() for command in running]


def succeeded(result: Result) -> Result:
    assert result.returncode == 0, result
    assert result.stderr == "", result
    return result


def refused(result: Result, detail: str) -> None:
    """The command failed with exit code 1 and only the reason, on stderr."""
    assert result.returncode == 1, result
    assert result.stderr == f"error: {detail}\n", result
    assert result.stdout == "", result


@pytest.fixture
def cli(api: Api, tmp_path: Path) -> Cli:
    return Cli(tmp_path, NUBIS_DATABASE_URL=api.database_url, NUBIS_DATA_DIR=str(api.data_dir))


def _email(name: str) -> str:
    return f"{name}@example.com"


def _person(store: Database, name: str) -> str:
    """A user made straight in the database (for tests about something else); their email."""
    with store.transaction() as session:
        accounts.create_user(session, name, _email(name), PASSWORD)
    return _email(name)


def _token(api: Api, email: str) -> str:
    """A token got from the API directly, as a script would."""
    response = httpx.post(
        f"{api.url}/v1/auth/token", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def _login(cli: Cli, api: Api, email: str, *options: str, password: str = PASSWORD) -> Running:
    return cli.start(
        "login", "--email", email, "--api-url", api.url, "--password-stdin", *options,
        stdin=f"{password}\n",
    )  # fmt: skip


def _public_key(directory: Path, comment: str) -> Path:
    """A new ed25519 public key file, made as people make them when they can."""
    private = directory / f"{comment}_ed25519"
    public = Path(f"{private}.pub")
    if shutil.which("ssh-keygen"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    else:
        line = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
            .decode()
        )
        public.write_text(f"{line} {comment}\n")
    return public


def _fingerprint(public: Path) -> str:
    """`SHA256:…`, as `ssh-keygen -l` shows it."""
    blob = base64.b64decode(public.read_text().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _enable_totp(cli: Cli, email: str) -> str:
    """`nubis totp enable` as a person runs it: read the secret it shows, put it in the
    authenticator app (pyotp), type the app's code at the prompt. The secret."""
    with cli.popen("totp", "enable", stdin=subprocess.PIPE, env=None) as process:
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        shown = ""
        secret: str | None = None
        while secret is None:
            line = process.stdout.readline()
            if not line:
                break
            shown += line
            match = re.fullmatch(r"\s*secret\s+([A-Z2-7]+)\s*", line)
            secret = match[1] if match else None
        if secret is None:
            process.kill()
            process.wait(10)
            pytest.fail(f"totp enable showed no secret:\n{shown}{process.stderr.read()}")
        process.stdin.write(pyotp.TOTP(secret).now() + "\n")
        process.stdin.close()
        shown += process.stdout.read()
        errors = process.stderr.read()
        assert process.wait(COMMAND_SECONDS) == 0, errors
        assert errors == ""
    assert "Add this account to your authenticator app" in shown
    assert f"otpauth://totp/nubis:{quote(email)}?secret={secret}" in shown
    assert "Code from the app:" in shown
    assert shown.endswith("TOTP is on: logging in now needs a code as well.\n")
    return secret


def _next_code(secret: str) -> str:
    """A code the app shows a step later: valid now (one step of drift), and newer than
    any code used so far, so it is not refused as a replay."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def _row_of(table: str, *cells: str) -> bool:
    """Whether a row of a printed table holds `cells`, in this order."""
    pattern = r"\s*│\s*".join(re.escape(cell) for cell in cells)
    return re.search(rf"│\s*{pattern}\s*│", table) is not None


# --- without an API ------------------------------------------------------------------


def test_a_command_without_a_login_says_to_run_nubis_login(tmp_path: Path) -> None:
    cli = Cli(tmp_path, NUBIS_DATA_DIR=str(tmp_path / "data"))
    refused(cli.run("project", "list"), NOT_LOGGED_IN.format("default"))
    assert not cli.config_path.exists()


def test_an_unreachable_api_fails_with_the_reason(tmp_path: Path) -> None:
    cli = Cli(tmp_path, NUBIS_DATA_DIR=str(tmp_path / "data"))
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = cli.run(
        "login", "--email", ALICE, "--api-url", nowhere, "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )  # fmt: skip
    assert result.returncode == 1, result
    assert result.stderr.startswith(f"error: cannot reach the API at {nowhere}: "), result
    assert result.stderr.count("\n") == 1, result
    assert result.stdout == ""
    assert not cli.config_path.exists()


# --- against `nubis api` on each store -------------------------------------------------


def _alice_and_bob_are_made_and_alice_logs_in(
    cli: Cli, api: Api, store: Database
) -> tuple[str, str]:
    """An operator makes the accounts through the API; alice's id and bob's generated
    password."""
    root = new_operator(api, store)
    made_alice = cli.run(
        "admin", "user", "create", "alice", "--email", ALICE, "--operator", "--password-stdin",
        stdin=f"{PASSWORD}\n", env=root,
    )  # fmt: skip
    created = re.fullmatch(
        rf"Created user alice \({re.escape(ALICE)}, (usr-\w+)\)\.\n", succeeded(made_alice).stdout
    )
    assert created is not None, made_alice

    logged_in, made_bob = together(
        _login(cli, api, ALICE),
        cli.start("admin", "user", "create", "bob", "--email", BOB, env=root),
    )
    assert succeeded(logged_in).stdout.startswith(
        f"Logged in to {api.url} as {ALICE} (profile default; token expires "
    )
    shown = re.search(r"^Password: (\S+) \(shown only now\)$", succeeded(made_bob).stdout, re.M)
    assert shown is not None, made_bob
    return created[1], shown[1]


def _alice_turns_on_totp_and_makes_a_project(cli: Cli, api: Api) -> dict[str, Any]:
    creating = cli.start("project", "create", "web", "--json")
    secret = _enable_totp(cli, ALICE)
    project: dict[str, Any] = creating.finish().json()
    assert set(project) == {"id", "name", "role", "created_at"}
    assert (project["name"], project["role"]) == ("web", "owner")
    assert project["id"].startswith("prj-")

    # From now on a login needs a code, and each code works once.
    code = _next_code(secret)
    without_code, with_code = together(
        _login(cli, api, ALICE), _login(cli, api, ALICE, "--totp-code", code)
    )
    assert without_code.returncode == 1, without_code
    assert without_code.stderr == (
        "error: this account needs a TOTP code as well: give it with --totp-code\n"
    )
    succeeded(with_code)
    replayed, used = together(
        _login(cli, api, ALICE, "--totp-code", code), cli.start("project", "use", "web")
    )
    refused(replayed, "the TOTP code is wrong or was used already")
    assert succeeded(used).stdout == "Using project web (your role: owner).\n"
    assert cli.config()["profiles"]["default"]["project"] == "web"
    return project


def _alice_adds_a_key_and_bob_as_bob_logs_in(
    cli: Cli, api: Api, key: Path, bob_password: str
) -> str:
    """Bob logs in on the same terminal under a profile of his own, which becomes
    current, so alice names hers meanwhile. Bob's id."""
    added_key, invited_bob, bob_login = together(
        cli.start("ssh-key", "add", "laptop", str(key), "--json", "--profile", "default"),
        cli.start("member", "add", BOB, "--role", "viewer", "--json", "--profile", "default"),
        _login(cli, api, BOB, "--profile", "bob", password=bob_password),
    )
    ssh_key = added_key.json()
    assert set(ssh_key) == {"id", "name", "fingerprint", "public_key", "created_at"}
    assert ssh_key["name"] == "laptop"
    assert ssh_key["fingerprint"] == _fingerprint(key)
    assert ssh_key["public_key"] == key.read_text().strip()
    invitation = invited_bob.json()
    assert set(invitation) == {
        "id", "project", "project_name", "email", "role", "invited_by", "created_at",
        "expires_at",
    }  # fmt: skip
    assert (invitation["project_name"], invitation["email"], invitation["role"]) == (
        "web",
        BOB,
        "viewer",
    )
    assert f"as {BOB} (profile bob;" in succeeded(bob_login).stdout
    config = cli.config()
    assert config["current"] == "bob"
    assert set(config["profiles"]) == {"default", "bob"}
    assert config["profiles"]["default"]["project"] == "web"

    # Bob, now the current profile, finds the invitation and accepts it.
    assert [i["id"] for i in cli.run("invitation", "list", "--json").json()] == [invitation["id"]]
    accepted = succeeded(cli.run("invitation", "accept", invitation["id"]))
    assert accepted.stdout == "You are in project web now, as viewer.\n"
    members = cli.run("member", "list", "-p", "web", "--json").json()
    (bob,) = [m for m in members if m["email"] == BOB]
    assert (bob["name"], bob["role"]) == ("bob", "viewer")
    bob_id: str = bob["user"]
    return bob_id


def _bob_reads_the_project_but_cannot_change_it(
    cli: Cli, project: dict[str, Any], key: Path, bobs_key: Path
) -> None:
    keys, shown, members, add_key, remove_key, add_member, delete_project = together(
        cli.start("ssh-key", "list", "-p", "web", "--json"),
        cli.start("project", "show", "web", "--json"),
        cli.start("member", "list", "--project", "web"),
        cli.start("ssh-key", "add", "mine", str(bobs_key), "-p", "web"),
        cli.start("ssh-key", "rm", "laptop", "-p", "web"),
        cli.start("member", "add", _email("carol"), "--role", "viewer", "-p", "web"),
        cli.start("project", "delete", "web", "-y"),
    )
    assert [(k["name"], k["fingerprint"]) for k in keys.json()] == [("laptop", _fingerprint(key))]
    assert shown.json() == {**project, "role": "viewer"}
    table = succeeded(members).stdout
    assert _row_of(table, "alice", ALICE, "owner")
    assert _row_of(table, "bob", BOB, "viewer")
    refused(add_key, VIEWER_REFUSED.format("member"))
    refused(remove_key, VIEWER_REFUSED.format("member"))
    refused(add_member, VIEWER_REFUSED.format("admin"))
    refused(delete_project, VIEWER_REFUSED.format("owner"))


def _project_is_as_alice_left_it(store: Database) -> None:
    with store.reading() as session:
        web = session.scalars(select(Project).where(Project.name == "web")).one()
        names = session.scalars(select(SshKey.name).where(SshKey.project_id == web.id)).all()
        assert names == ["laptop"]
        roles = session.execute(
            select(User.name, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.project_id == web.id)
        ).all()
        assert sorted((name, str(role)) for name, role in roles) == [
            ("alice", "owner"),
            ("bob", "viewer"),
        ]
        alice = session.scalars(select(User).where(User.name == "alice")).one()
        assert (alice.is_operator, alice.totp_enabled) == (True, True)


def test_an_operator_shares_a_project_with_a_viewer_who_can_read_but_not_change_it(
    api: Api, store: Database, cli: Cli, tmp_path: Path
) -> None:
    """The whole story, on one terminal: alice, an operator, turns on TOTP, makes a
    project and invites bob as a viewer; bob, under a second profile, accepts, reads the
    project but cannot change it; the audit log holds every login attempt."""
    _person(store, "carol")
    key, bobs_key = _public_key(tmp_path, "alice"), _public_key(tmp_path, "bob")

    alice_id, bob_password = _alice_and_bob_are_made_and_alice_logs_in(cli, api, store)
    project = _alice_turns_on_totp_and_makes_a_project(cli, api)
    bob_id = _alice_adds_a_key_and_bob_as_bob_logs_in(cli, api, key, bob_password)
    # Every login is over by now, so the audit log is read alongside bob's commands.
    # Alice's profile: bob's is the current one by now.
    audit = cli.start("admin", "audit", "--action", "login", "--json", "--profile", "default")
    _bob_reads_the_project_but_cannot_change_it(cli, project, key, bobs_key)
    _project_is_as_alice_left_it(store)

    events = [event for event in audit.finish().json() if event["email"] in (ALICE, BOB)]
    assert all(
        set(e) == {"id", "at", "action", "outcome", "email", "source", "target", "detail", "user"}
        for e in events
    )
    assert Counter((e["email"], e["outcome"], e["detail"]) for e in events) == Counter(
        {
            (ALICE, "success", None): 2,
            (ALICE, "failure", "no TOTP code"): 1,
            (ALICE, "failure", "wrong or reused TOTP code"): 1,
            (BOB, "success", None): 1,
        }
    )
    assert {e["source"] for e in events} == {"127.0.0.1"}
    assert {e["user"] for e in events if e["email"] == ALICE} == {alice_id}
    assert {e["user"] for e in events if e["email"] == BOB} == {bob_id}


def test_login_keeps_the_token_in_a_private_file_that_the_environment_overrides(
    api: Api, store: Database, cli: Cli
) -> None:
    dora = _person(store, "dora")
    other = _token(api, _person(store, "ezra"))
    succeeded(_login(cli, api, dora).finish())

    assert cli.config_path.stat().st_mode & 0o777 == 0o600
    config = cli.config()
    token = config["profiles"]["default"]["token"]
    assert token.startswith("nubis_")
    assert config == {
        "current": "default",
        "profiles": {"default": {"api_url": api.url, "token": token}},
    }
    assert [p.name for p in cli.config_path.parent.iterdir()] == ["config.toml"]

    nowhere = f"http://127.0.0.1:{free_port()}"
    from_file, by_token, by_url = together(
        cli.start("whoami", "--json"),
        cli.start("whoami", "--json", env={"NUBIS_TOKEN": other}),
        cli.start("whoami", env={"NUBIS_API_URL": nowhere}),
    )
    me = from_file.json()
    assert set(me) == {
        "id", "name", "email", "is_operator", "totp_enabled", "disabled", "created_at",
    }  # fmt: skip
    assert (me["name"], me["email"], me["is_operator"]) == ("dora", dora, False)
    assert by_token.json()["name"] == "ezra"
    assert by_url.returncode == 1, by_url
    assert by_url.stderr.startswith(f"error: cannot reach the API at {nowhere}: "), by_url


def test_logout_revokes_the_token_and_forgets_it(api: Api, store: Database, cli: Cli) -> None:
    token = _token(api, _person(store, "finn"))
    cli.config_path.parent.mkdir(parents=True)
    cli.config_path.write_text(
        tomli_w.dumps(
            {"current": "default", "profiles": {"default": {"api_url": api.url, "token": token}}}
        )
    )
    assert succeeded(cli.run("logout")).stdout == "Logged out (profile default).\n"
    assert cli.config() == {"current": "default", "profiles": {"default": {"api_url": api.url}}}
    refused(cli.run("whoami", env={"NUBIS_TOKEN": token}), INVALID_TOKEN)


def test_a_new_token_shows_its_secret_once_and_stops_working_when_revoked(
    api: Api, store: Database, cli: Cli
) -> None:
    env = {"NUBIS_API_URL": api.url, "NUBIS_TOKEN": _token(api, _person(store, "hana"))}
    bad_unit, created = together(
        cli.start("token", "create", "ci", "--expires-in", "30x", env=env),
        cli.start("token", "create", "ci", "--json", env=env),
    )
    refused(
        bad_unit,
        "the request is invalid: expires_in: '30x' is not a duration: use a whole number "
        "with a unit: s, m, h, d or w (e.g. 90m, 12h, 30d)",
    )
    ci = created.json()
    assert set(ci) == {
        "id", "name", "user", "project", "expires_at", "revoked_at", "created_at", "secret",
    }  # fmt: skip
    assert (ci["name"], ci["user"], ci["project"], ci["expires_at"]) == ("ci", "hana", None, None)
    secret = ci["secret"]
    assert secret.startswith("nubis_")

    listed, as_ci = together(
        cli.start("token", "list", env=env),
        cli.start("whoami", "--json", env={**env, "NUBIS_TOKEN": secret}),
    )
    table = succeeded(listed).stdout
    assert secret not in table
    assert _row_of(table, "ci", ci["id"])
    assert _row_of(table, "login")
    assert as_ci.json()["name"] == "hana"

    # Revoking by name works only for a unique name: the refused `ci` was never made.
    assert succeeded(cli.run("token", "revoke", "ci", env=env)).stdout == "Revoked ci.\n"
    refused(cli.run("whoami", env={**env, "NUBIS_TOKEN": secret}), INVALID_TOKEN)


def test_logout_with_a_token_from_the_environment_keeps_the_profile_token(
    api: Api, store: Database, cli: Cli
) -> None:
    kept, other = _token(api, _person(store, "ivan")), _token(api, _person(store, "jana"))
    cli.config_path.parent.mkdir(parents=True)
    cli.config_path.write_text(
        tomli_w.dumps(
            {"current": "default", "profiles": {"default": {"api_url": api.url, "token": kept}}}
        )
    )
    succeeded(cli.run("logout", env={"NUBIS_TOKEN": other}))
    assert cli.config()["profiles"]["default"]["token"] == kept
    refused(cli.run("whoami", env={"NUBIS_TOKEN": other}), INVALID_TOKEN)
    assert json.loads(succeeded(cli.run("whoami", "--json")).stdout)["name"] == "ivan"


def test_text_from_users_is_printed_as_it_is_and_names_stay_one_path_segment(
    api: Api, store: Database, cli: Cli
) -> None:
    env = {"NUBIS_API_URL": api.url, "NUBIS_TOKEN": _token(api, _person(store, "kim"))}
    succeeded(cli.run("project", "create", "kims", env=env))
    refused(
        cli.run("member", "add", "[/]", "-p", "kims", env=env),
        "the request is invalid: email: '[/]' is not an email address",
    )
    refused(cli.run("member", "rm", "[red]x", "-p", "kims", env=env), "kims has no member '[red]x'")
    for name in ("kims/..", "kims/members"):
        refused(
            cli.run("project", "show", name, env=env),
            "no such path: names and ids never hold a '/'",
        )
