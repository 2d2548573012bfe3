"""The one authorization decision: roles, project scope, operators."""

from __future__ import annotations

import pytest

from nubis.auth.authz import REQUIRED_ROLE, Action, Principal, ProjectAccess, authorize
from nubis.errors import Forbidden, NotFound
from nubis.ids import new_id
from nubis.models import Project, Role

PROJECT = Project(id=new_id(), name="web")


def _principal(*, operator: bool = False, scope: object = None) -> Principal:
    return Principal(
        user_id=new_id(),
        user_name="alice",
        is_operator=operator,
        token_id=new_id(),
        project_scope=scope,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(REQUIRED_ROLE))
def test_a_role_may_do_what_its_rank_allows(role: Role, action: Action) -> None:
    access = ProjectAccess(PROJECT, role)
    if role.rank >= REQUIRED_ROLE[action].rank:
        authorize(_principal(), action, access)
    else:
        with pytest.raises(Forbidden):
            authorize(_principal(), action, access)


def test_the_ladder_is_viewer_member_admin_owner() -> None:
    assert [REQUIRED_ROLE[a] for a in (Action.READ, Action.WRITE, Action.MANAGE)] == [
        Role.VIEWER,
        Role.MEMBER,
        Role.ADMIN,
    ]
    assert REQUIRED_ROLE[Action.DELETE_PROJECT] is Role.OWNER


def test_a_project_outside_the_token_scope_is_not_found() -> None:
    with pytest.raises(NotFound):
        authorize(_principal(scope=new_id()), Action.READ, ProjectAccess(PROJECT, Role.OWNER))
    authorize(_principal(scope=PROJECT.id), Action.READ, ProjectAccess(PROJECT, Role.OWNER))


def test_without_membership_a_project_is_not_found() -> None:
    with pytest.raises(NotFound):
        authorize(_principal(operator=True), Action.READ, None)


def test_only_unscoped_operator_tokens_may_operate() -> None:
    authorize(_principal(operator=True), Action.OPERATE)
    with pytest.raises(Forbidden):
        authorize(_principal(), Action.OPERATE)
    with pytest.raises(Forbidden):
        authorize(_principal(operator=True, scope=PROJECT.id), Action.OPERATE)


def test_a_scoped_token_may_read_but_not_manage_its_account() -> None:
    scoped = _principal(scope=PROJECT.id)
    authorize(scoped, Action.READ_ACCOUNT)
    with pytest.raises(Forbidden):
        authorize(scoped, Action.MANAGE_ACCOUNT)
