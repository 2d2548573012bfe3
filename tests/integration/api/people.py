"""Users, projects and tokens made straight in the database, for API tests."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from uuid import UUID

import httpx2
from fastapi.testclient import TestClient
from sqlalchemy import select

from nubis.auth import accounts, tokens
from nubis.auth.passwords import hash_password
from nubis.db import Database
from nubis.ids import Kind, format_id
from nubis.models import Membership, Project, Role, User

PASSWORD = "correct horse battery"
PROBLEM = "application/problem+json"


@dataclass(eq=False)
class Person:
    name: str
    email: str
    key: UUID
    token: str
    client: TestClient

    @property
    def id(self) -> str:
        return format_id(Kind.USER, self.key)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        response: httpx2.Response = self.client.get(path, headers=self.auth, **kwargs)
        return response

    def post(
        self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx2.Response:
        response: httpx2.Response = self.client.post(
            path, json=json, headers={**self.auth, **(headers or {})}, **kwargs
        )
        return response

    def put(self, path: str, content: bytes) -> httpx2.Response:
        response: httpx2.Response = self.client.put(
            path,
            content=content,
            headers={**self.auth, "Content-Type": "application/octet-stream"},
        )
        return response

    def patch(self, path: str, json: Any = None) -> httpx2.Response:
        response: httpx2.Response = self.client.patch(path, json=json, headers=self.auth)
        return response

    def delete(self, path: str) -> httpx2.Response:
        response: httpx2.Response = self.client.delete(path, headers=self.auth)
        return response


@cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


class People:
    def __init__(self, db: Database, client: TestClient) -> None:
        self.db = db
        self.client = client
        self._fuzz_operator: Person | None = None
        self._fuzzers: dict[Role, Person] = {}

    def user(self, name: str, *, operator: bool = False) -> Person:
        """A user with an unscoped token."""
        with self.db.transaction() as session:
            user = accounts.create_user(
                session, name, f"{name}@example.test", PASSWORD, operator=operator
            )
            _, secret = tokens.issue(session, user.id, "test")
            return Person(name, user.email, user.id, secret, self.client)

    def fuzz_operator(self) -> Person:
        """One operator for all of a fuzzing test's examples, owner of project `fuzz`."""
        if self._fuzz_operator is None:
            self._fuzz_operator = self.user("fuzzer", operator=True)
            self.project("fuzz", {self._fuzz_operator: Role.OWNER})
        return self._fuzz_operator

    def fuzzer(self, role: Role) -> Person:
        """One user, not an operator, for all of a fuzzing test's examples, with `role`
        in project `fuzz`; made with a password hash computed once, as a fuzzing test
        is short and there are many."""
        if role not in self._fuzzers:
            name = f"fuzzer-{role}"
            with self.db.transaction() as session:
                user = User(name=name, email=f"{name}@example.test", password_hash=_password_hash())
                project = session.scalars(select(Project).where(Project.name == "fuzz")).first()
                if project is None:
                    project = Project(name="fuzz")
                session.add_all([user, project])
                session.flush()
                session.add(Membership(project_id=project.id, user_id=user.id, role=role))
                _, secret = tokens.issue(session, user.id, "test")
                person = Person(name, user.email, user.id, secret, self.client)
            self._fuzzers[role] = person
        return self._fuzzers[role]

    def project(self, name: str, members: dict[Person, Role]) -> str:
        """A project with these members; its id."""
        with self.db.transaction() as session:
            project = Project(name=name)
            session.add(project)
            session.flush()
            for person, role in members.items():
                session.add(Membership(project_id=project.id, user_id=person.key, role=role))
            return format_id(Kind.PROJECT, project.id)

    def join(self, project: str, person: Person, role: Role) -> None:
        """Make `person` a member of the project named `project` with `role`."""
        with self.db.transaction() as session:
            found = session.scalars(select(Project).where(Project.name == project)).one()
            session.add(Membership(project_id=found.id, user_id=person.key, role=role))


def problem(response: httpx2.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The problem document of `response`, once its status (and code) are as expected."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    return body
