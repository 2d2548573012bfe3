"""`nubis login`, `logout`, `whoami` and `totp enable|disable`: the caller's own account."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from nubis.cli.client import Client, signed_in
from nubis.cli.output import JsonOption, console, show
from nubis.cli.profile import DEFAULT_API_URL, Config
from nubis.errors import SecondFactorRequired

ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="Profile to use (default: the current one).")
]

totp_app = typer.Typer(help="The TOTP second factor of your account.", no_args_is_help=True)


def _secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = typer.prompt(prompt, hide_input=True)
    return value


def login(
    email: Annotated[str | None, typer.Option(help="Your email (asked if not given).")] = None,
    api_url: Annotated[
        str | None, typer.Option(help=f"The API, e.g. {DEFAULT_API_URL}; kept in the profile.")
    ] = None,
    totp_code: Annotated[
        str | None, typer.Option(help="A TOTP code (asked for when the account needs one).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Log in with your email and password (and TOTP code) and keep the token in a profile."""
    config = Config.load()
    chosen = config.profile(profile)
    url = api_url or chosen.api_url
    address = email or typer.prompt("Email")
    password = _secret("Password", password_stdin)
    client = Client(url)
    body: dict[str, Any] = {"email": address, "password": password, "token_name": "cli"}
    if totp_code:
        body["totp_code"] = totp_code
    try:
        answer = client.post("/v1/auth/token", body)
    except SecondFactorRequired as error:
        if password_stdin:  # stdin is spent: there is no one to ask
            raise SecondFactorRequired(f"{error.detail}: give it with --totp-code") from None
        body["totp_code"] = typer.prompt("TOTP code")
        answer = client.post("/v1/auth/token", body)
    config.update(chosen.name, api_url=url, token=answer["secret"])
    config.save()
    console.print(
        f"Logged in to {url} as {address} (profile {chosen.name}; "
        f"token expires {answer['expires_at']}).",
    )


def logout(profile: ProfileOption = None) -> None:
    """Revoke the token in use and, if it is the profile's, forget it."""
    config = Config.load()
    chosen = config.profile(profile)
    if chosen.token:
        Client(chosen.api_url, chosen.token).delete("/v1/auth/token")
    if os.environ.get("NUBIS_TOKEN"):
        console.print("Revoked the token in NUBIS_TOKEN; the profile is unchanged.")
        return
    config.update(chosen.name, token=None)
    config.save()
    console.print(f"Logged out (profile {chosen.name}).")


def whoami(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    """Who the profile's token belongs to."""
    client, _ = signed_in(profile)
    show(client.get("/v1/users/me"), as_json)


@totp_app.command("enable")
def totp_enable(
    code: Annotated[str | None, typer.Option(help="A first code (asked if not given).")] = None,
    profile: ProfileOption = None,
) -> None:
    """Enrol an authenticator app: shows its secret, then asks for a first code."""
    client, _ = signed_in(profile)
    enrollment = client.post("/v1/users/me/totp")
    console.print(
        "Add this account to your authenticator app:\n"
        f"  secret  {enrollment['secret']}\n"
        f"  or URI  {enrollment['uri']}",
    )
    first = code or typer.prompt("Code from the app")
    client.post("/v1/users/me/totp/confirm", {"code": first})
    console.print("TOTP is on: logging in now needs a code as well.")


@totp_app.command("disable")
def totp_disable(
    code: Annotated[str | None, typer.Option(help="A current code (asked if not given).")] = None,
    profile: ProfileOption = None,
) -> None:
    """Turn TOTP off (it takes a current code)."""
    client, _ = signed_in(profile)
    client.post("/v1/users/me/totp/disable", {"code": code or typer.prompt("TOTP code")})
    console.print("TOTP is off.")


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
    app.add_typer(totp_app, name="totp")
