"""The CLI's HTTP client of the API: JSON in, JSON out, problems raised as NubisErrors."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx

from nubis.cli.profile import Config, Profile
from nubis.errors import InvalidInput, Unauthenticated, Unavailable, from_problem

TIMEOUT_SECONDS = 30.0
UPLOAD_ANSWER_SECONDS = 600.0
"""How long an upload waits for the API to hash, check and keep the file it received."""


class Client:
    def __init__(self, api_url: str, token: str | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=TIMEOUT_SECONDS)

    @classmethod
    def for_profile(cls, profile: Profile) -> Client:
        if not profile.token:
            raise Unauthenticated(
                f"not logged in (profile {profile.name}): run `nubis login` or set NUBIS_TOKEN"
            )
        return cls(profile.api_url, profile.token)

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        """The successful answer; a problem the API answered is raised as its NubisError."""
        try:
            response = self._http.request(method, path, **options)
        except httpx.TransportError as error:
            raise Unavailable(f"cannot reach the API at {self.api_url}: {error}") from None
        if response.is_success:
            return response
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": f"HTTP {response.status_code}: {response.text[:200]}"}
        raise from_problem(problem, response.status_code)

    def request(self, method: str, path: str, json: Any = None, **params: Any) -> Any:
        """The answer's JSON (None for 204). A POST carries a fresh Idempotency-Key, so the
        transport may retry it safely."""
        headers = {"Idempotency-Key": str(uuid.uuid4())} if method == "POST" else {}
        query = {k: v for k, v in params.items() if v is not None}
        response = self._send(method, path, json=json, params=query, headers=headers)
        if response.status_code == 204:
            return None
        return response.json()

    def text(self, path: str) -> str:
        """A GET whose answer is text, not JSON."""
        return self._send("GET", path).text

    def put_stream(self, path: str, chunks: Iterable[bytes], length: int) -> Any:
        """PUT a raw body of `length` bytes from `chunks` as they come, so a file of many
        gigabytes is never held in memory; the answer's JSON. The server checks the whole
        file before it answers, hence the long read timeout."""
        response = self._send(
            "PUT",
            path,
            content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
            timeout=httpx.Timeout(TIMEOUT_SECONDS, read=UPLOAD_ANSWER_SECONDS),
        )
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, **params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def patch(self, path: str, json: Any) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def every(self, path: str, **params: Any) -> list[Any]:
        """All items of a list endpoint, page after page."""
        return self.first(path, None, **params)

    def first(self, path: str, count: int | None, **params: Any) -> list[Any]:
        """The first `count` items (None: all) of a list endpoint, page after page."""
        items: list[Any] = []
        cursor: str | None = None
        while count is None or len(items) < count:
            size = 500 if count is None else min(500, count - len(items))
            page = self.get(path, limit=size, cursor=cursor, **params)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return items


def part(value: str) -> str:
    """`value` as one segment of a URL path: a `/` or `..` in it stays inside the segment."""
    return quote(value, safe="")


def signed_in(profile_name: str | None = None) -> tuple[Client, Profile]:
    profile = Config.load().profile(profile_name)
    return Client.for_profile(profile), profile


def client_of(profile_name: str | None = None) -> Client:
    """The client of the profile, for commands that work in no project (`nubis admin`)."""
    return signed_in(profile_name)[0]


def project_of(profile: Profile, given: str | None) -> str:
    """The project a command works in: --project, else NUBIS_PROJECT or the profile's."""
    project = given or profile.project
    if not project:
        raise InvalidInput("no project given: use --project NAME or `nubis project use NAME`")
    return project
