"""A project's VMs: the list, a new VM, one VM's page, and what a user asks of it.

The list and a VM's panel are fragments that htmx asks for again every few
seconds, so a VM is seen going from creating to running without a reload; a request
(start, stop, reboot, delete) answers with the fragment as the API's answer shows the
VM, so `deleting` shows the moment delete is clicked.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep, SettingsDep
from nubis.api.routes import firewall_rules, images, networks, ssh_keys
from nubis.api.routes import vms as api
from nubis.api.schemas.network import NicAdd
from nubis.api.schemas.vm import VmCreate, VmOut
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import NotFound, NubisError
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of

router = APIRouter(prefix="/projects/{project}/vms", include_in_schema=False)

SHOWN = 100
"""VMs on one page of the list (one page of the API's list); older ones on the next."""

STOP_POLLING = 286
"""The status that tells htmx to stop polling: the VM is gone."""

ACTIONS = {
    "start": api.start_vm,
    "stop": api.stop_vm,
    "reboot": api.reboot_vm,
    "delete": api.delete_vm,
}


@router.get("")
def list_page(
    request: Request, project: str, db: DatabaseDep, principal: SignedIn, cursor: str | None = None
) -> Response:
    """The list as a page; for htmx's polling, only the list."""
    page = pages.project_page(db, principal, project)
    listed = api.list_vms(project, db, principal, limit=SHOWN, cursor=cursor)
    template = "vm_rows.html" if request.headers.get("HX-Request") else "vms.html"
    return pages.render(request, template, page=page, vms=listed, cursor=cursor)


def _form_page(
    request: Request,
    db: Database,
    principal: Principal,
    project: str,
    *,
    form: dict[str, Any],
    error: NubisError | None = None,
) -> Response:
    page = pages.project_page(db, principal, project)
    return pages.render(
        request,
        "vm_new.html",
        page=page,
        images=images.list_images(project, db, principal, limit=100, cursor=None).items,
        networks=networks.list_networks(project, db, principal, limit=100, cursor=None).items,
        keys=ssh_keys.list_ssh_keys(project, db, principal, limit=100, cursor=None).items,
        form=form,
        error=error,
    )


@router.get("/new")
def new_page(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    return _form_page(request, db, principal, project, form={"cores": 1, "memory": "1G"})


def _body(form: dict[str, str], networks_chosen: list[str], keys: list[str] | None) -> VmCreate:
    """The API's request body that the form describes; what is left empty is the API's
    default."""
    fields: dict[str, Any] = {
        "name": form.get("name", ""),
        "image": form.get("image", ""),
        "memory": form.get("memory") or "1G",
        "networks": networks_chosen,
        "ha": form.get("ha") == "on",
    }
    cores = form.get("cores", "").strip()
    fields["cores"] = int(cores) if cores.isdigit() else cores or 1
    for name in ("disk", "group", "user_data", "location"):
        if form.get(name, "").strip():
            fields[name] = form[name] if name == "user_data" else form[name].strip()
    if keys is not None:
        fields["ssh_keys"] = keys
    return VmCreate(**fields)


@router.post("", dependencies=CHANGE)
async def create(
    request: Request, project: str, db: DatabaseDep, settings: SettingsDep, principal: SignedIn
) -> Response:
    posted = await request.form()
    form = await form_of(request)
    chosen_networks = [v for v in posted.getlist("networks") if isinstance(v, str)]
    chosen_keys = [v for v in posted.getlist("ssh_keys") if isinstance(v, str)]
    try:
        keys = _key_lines(db, principal, project, chosen_keys)
        made = api.create_vm(project, _body(form, chosen_networks, keys), db, settings, principal)
    except (ValidationError, NubisError) as refused:
        return _form_page(request, db, principal, project, form=form, error=pages.refusal(refused))
    return pages.redirect(f"/projects/{project}/vms/{made.name}", request)


def _key_lines(
    db: Database, principal: Principal, project: str, names: list[str]
) -> list[str] | None:
    """The public keys of the project's keys the form ticked; none ticked: None, for
    all of them (the API's default, and what the CLI does without --ssh-key)."""
    if not names:
        return None
    return [ssh_keys.read_ssh_key(project, n, db, principal).public_key for n in names]


@router.get("/{vm}")
def show(request: Request, project: str, vm: str, db: DatabaseDep, principal: SignedIn) -> Response:
    return vm_page(request, project, vm, db, principal)


def vm_page(
    request: Request,
    project: str,
    vm: str,
    db: Database,
    principal: Principal,
    *,
    form: dict[str, str] | None = None,
    error: NubisError | None = None,
) -> Response:
    """The VM's page: its live panel, and the forms for its NICs and firewall rules
    (with a refused one's error and what was typed)."""
    page = pages.project_page(db, principal, project)
    shown = _panel(db, principal, project, vm)
    return pages.render(
        request,
        "vm.html",
        page=page,
        rules=firewall_rules.list_firewall_rules(
            project, db, principal, vm=shown["vm"].id, limit=100, cursor=None
        ).items,
        networks=networks.list_networks(project, db, principal, limit=100, cursor=None).items,
        form=form or {},
        error=error,
        **shown,
    )


def _panel(db: Database, principal: Principal, project: str, vm: str) -> dict[str, Any]:
    found = api.read_vm(project, vm, db, principal)
    return {
        "vm": found,
        "events": api.list_vm_events(
            project, vm, db=db, principal=principal, limit=100, cursor=None
        ).items,
        "console": api.read_console(project, vm, db, principal),
    }


@router.get("/{vm}/panel")
def panel(
    request: Request, project: str, vm: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    page = pages.project_page(db, principal, project)
    try:
        shown = _panel(db, principal, project, vm)
    except NotFound:
        return pages.render(request, "vm_gone.html", status_code=STOP_POLLING, page=page, name=vm)
    return pages.render(request, "vm_panel.html", page=page, **shown)


@router.post("/{vm}/nics", dependencies=CHANGE)
async def add_nic(
    request: Request, project: str, vm: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    """A NIC in a project network; its host adds it, to the running VM too."""
    form = await form_of(request)
    try:
        api.add_nic(project, vm, NicAdd(network=form.get("network", "")), db, principal)
    except (ValidationError, NubisError) as refused:
        # Rendered again as the principal: what they may not see is a 404 all the same.
        return vm_page(request, project, vm, db, principal, error=pages.refusal(refused))
    return pages.redirect(f"/projects/{project}/vms/{vm}")


@router.post("/{vm}/nics/{network}/delete", dependencies=CHANGE)
def remove_nic(
    request: Request, project: str, vm: str, network: str, *, db: DatabaseDep, principal: SignedIn
) -> Response:
    try:
        api.remove_nic(project, vm, network, db, principal)
    except NubisError as error:
        return vm_page(request, project, vm, db, principal, error=error)
    return pages.redirect(f"/projects/{project}/vms/{vm}")


# After the routes under /{vm}/ that have names of their own.
@router.post("/{vm}/{action}", dependencies=CHANGE)
def act(
    request: Request, project: str, vm: str, action: str, *, db: DatabaseDep, principal: SignedIn
) -> Response:
    """Start, stop, reboot or delete; the answer shows the VM as the API's answer does."""
    call = ACTIONS.get(action)
    if call is None:
        raise NotFound(f"a VM has no action {action!r}")
    page = pages.project_page(db, principal, project)
    answer: VmOut = call(project, vm, db, principal)
    if request.headers.get("HX-Target") == f"row-{answer.id}":
        return pages.render(request, "vm_row.html", page=page, vm=answer)
    if not request.headers.get("HX-Request"):
        return pages.redirect(f"/projects/{project}/vms/{answer.name}")
    shown = _panel(db, principal, project, vm)
    shown["vm"] = answer
    return pages.render(request, "vm_panel.html", page=page, **shown)
