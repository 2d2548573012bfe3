"""Someone using the console as a browser does: a cookie jar of their own, forms
posted with the CSRF token of the page they came from."""

from __future__ import annotations

import re
from typing import Any

import httpx2
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.integration.api.people import PASSWORD

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


class Visitor:
    def __init__(self, app: FastAPI) -> None:
        self.client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        page: httpx2.Response = self.client.get(path, **kwargs)
        found = _CSRF.search(page.text)
        if found:
            self.csrf = found[1]
        return page

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx2.Response:
        """Post a form as the page last seen would, with its CSRF token."""
        answer: httpx2.Response = self.client.post(
            path, data={"csrf": self.csrf, **(data or {})}, **kwargs
        )
        return answer

    def sign_in(
        self, email: str, password: str = PASSWORD, code: str | None = None
    ) -> httpx2.Response:
        self.get("/login")
        answer = self.post("/login", {"email": email, "password": password, "next": "/"})
        if code is not None:
            answer = self.post("/login", {"email": email, "password": password, "totp_code": code})
        if answer.status_code == 303:
            self.get("/projects")  # a page of the session, for its CSRF token
        return answer
