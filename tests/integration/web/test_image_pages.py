"""Images in the console: the upload the page's script makes (the name posted, then the
file streamed as a PUT with the page's CSRF token), refused files with the API's reason,
and deleting one."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from nubis.web.session import CSRF_HEADER
from tests.integration.api.people import Person
from tests.integration.api.test_images import qcow2
from tests.integration.web.conftest import signed_in


def test_an_image_named_by_the_form_and_streamed_by_the_script_becomes_active(
    app: FastAPI, alice: Person, project: str, tmp_path: Path
) -> None:
    visitor = signed_in(app, alice)
    page = visitor.get("/projects/web/images")
    assert 'id="upload"' in page.text
    content = qcow2(tmp_path, "disk.qcow2", "-o", "preallocation=full", size="3M")

    named = visitor.post("/projects/web/images", {"name": "debian", "login_user": "debian"})
    sent = visitor.client.put(
        "/projects/web/images/debian/file",
        content=content,
        headers={CSRF_HEADER: visitor.csrf, "Content-Type": "application/octet-stream"},
    )

    assert named.status_code == 201
    assert named.json()["state"] == "uploading"
    assert sent.status_code == 200, sent.text
    assert (sent.json()["state"], sent.json()["virtual_size_bytes"]) == ("active", 3 * 2**20)
    assert len(content) > 1024 * 1024  # past the body limit: streamed, not buffered
    listed = visitor.get("/projects/web/images")
    assert '<tr data-image="debian"><td>debian</td>' in listed.text
    assert "<td>debian</td></tr>" not in listed.text  # the login user is its own column
    deleted = visitor.post("/projects/web/images/debian/delete")
    assert deleted.headers["location"] == "/projects/web/images"
    assert [i["name"] for i in alice.get("/v1/projects/web/images").json()["items"]] == ["tiny"]


def test_a_file_that_is_not_qcow2_or_has_no_csrf_token_is_refused_with_the_reason(
    app: FastAPI, alice: Person, project: str
) -> None:
    visitor = signed_in(app, alice)
    visitor.get("/projects/web/images")
    assert visitor.post("/projects/web/images", {"name": "raw"}).status_code == 201
    bad_name = visitor.post("/projects/web/images", {"name": "Raw!"})

    forged = visitor.client.put(
        "/projects/web/images/raw/file", content=b"x" * 4096, headers={CSRF_HEADER: "0" * 64}
    )
    refused = visitor.client.put(
        "/projects/web/images/raw/file", content=b"x" * 4096, headers={CSRF_HEADER: visitor.csrf}
    )

    assert bad_name.status_code == 422
    assert bad_name.json()["errors"] == {"name": bad_name.json()["errors"]["name"]}
    assert forged.status_code == 403
    assert refused.status_code == 422
    assert "raw, not qcow2" in refused.json()["detail"]
