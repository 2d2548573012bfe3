// The image upload: name the image (POST), then stream the file as the raw body of a
// PUT, showing its progress; the list is reloaded once the image is in (or refused).
"use strict";

(function () {
  const form = document.getElementById("upload");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  const base = "/projects/" + encodeURIComponent(form.dataset.project) + "/images";

  function say(text) { status.textContent = text; }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const file = form.elements.file.files[0];
    const fields = new FormData();
    fields.set("csrf", form.dataset.csrf);
    fields.set("name", form.elements.name.value);
    fields.set("login_user", form.elements.login_user.value);
    const named = await fetch(base, { method: "POST", body: fields });
    const image = await named.json();
    if (!named.ok) { say(image.detail); return; }
    bar.hidden = false;
    const put = new XMLHttpRequest();
    put.open("PUT", base + "/" + encodeURIComponent(image.name) + "/file");
    put.setRequestHeader("Content-Type", "application/octet-stream");
    put.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    put.upload.addEventListener("progress", function (progress) {
      if (progress.lengthComputable) {
        bar.value = Math.round((100 * progress.loaded) / progress.total);
        say("Sent " + bar.value + "%");
      }
    });
    put.addEventListener("load", function () {
      const answer = JSON.parse(put.responseText);
      say(put.status < 300 ? image.name + " is " + answer.state : answer.detail);
      if (put.status < 300) window.location.reload();
    });
    put.addEventListener("error", function () { say("the upload failed: the connection broke"); });
    put.send(file);
  });
})();
