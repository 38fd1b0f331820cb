/* The /import page: pick or drop a webrtc-internals dump, upload it with progress
   (XMLHttpRequest reports upload progress, fetch does not), wait until the
   imported call can be read, then open its page. */
"use strict";

(function () {
  const form = document.getElementById("import-form");
  const callInput = document.getElementById("import-call");
  const fileInput = document.getElementById("import-file");
  const drop = document.getElementById("import-drop");
  const fileName = document.getElementById("import-file-name");
  const submit = document.getElementById("import-submit");
  const progress = document.getElementById("import-progress");
  const status = document.getElementById("import-status");
  const errorBox = document.getElementById("import-error");
  const maxImport = Number(form.dataset.maxImport);
  // The server's identifier rule (handlers/pages.py), not a copy of it.
  const idChars = form.dataset.identifierChars;
  const idMax = Number(form.dataset.identifierMax);
  const CALL_ID = new RegExp(`^[${idChars}]{1,${idMax}}$`);
  const NOT_ID = new RegExp(`[^${idChars}]+`, "g");
  let file = null;
  let busy = false;

  RS.setFeed("idle", "no live feed");

  function size(bytes) {
    return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function refresh() {
    submit.disabled = busy || !file || !CALL_ID.test(callInput.value.trim());
  }

  /** A call id from the file name, when the operator has not typed one. */
  function suggestedCall(name) {
    const stem = name.replace(/\.(json|txt|gz)$/gi, "").replace(NOT_ID, "-").slice(0, idMax);
    return CALL_ID.test(stem) ? stem : "";
  }

  function choose(chosen) {
    showError("");
    if (!chosen) return;
    if (chosen.size > maxImport) {
      file = null;
      fileName.textContent = chosen.name;
      showError(`${chosen.name} is ${size(chosen.size)}; this server takes dumps up to ${size(maxImport)}.`);
    } else {
      file = chosen;
      fileName.textContent = `${chosen.name} (${size(chosen.size)})`;
      if (!callInput.value.trim()) callInput.value = suggestedCall(chosen.name);
    }
    refresh();
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  callInput.addEventListener("input", refresh);
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer.files[0]);
  });
  // A file dropped beside the zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  function upload(call, body) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", "/v1/import/webrtc-internals?call=" + encodeURIComponent(call));
      request.setRequestHeader("Content-Type", "application/octet-stream");
      request.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        progress.value = event.loaded / event.total;
        status.textContent = event.loaded < event.total
          ? `Uploading… ${Math.round(100 * event.loaded / event.total)} %` : "Reading the dump…";
      });
      request.addEventListener("load", () => {
        let answer = null;
        try { answer = JSON.parse(request.responseText); } catch (error) { /* not JSON: a proxy's page */ }
        if (request.status === 200 && answer) resolve(answer);
        else reject(new Error(answer && answer.error ? answer.error.message : `the server answered ${request.status}`));
      });
      request.addEventListener("error", () => reject(new Error("the upload failed: the connection was lost")));
      request.send(body);
    });
  }

  /** The call's summary is readable once its points have reached InfluxDB (a flush interval or so). */
  async function waitUntilReadable(call) {
    const deadline = Date.now() + 30000;
    for (;;) {
      try {
        return await RS.getJSON("/v1/calls/" + encodeURIComponent(call) + "/");
      } catch (error) {
        if (error.status !== 404 || Date.now() > deadline) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const call = callInput.value.trim();
    if (!file || !CALL_ID.test(call)) return;
    busy = true;
    refresh();
    showError("");
    progress.hidden = false;
    progress.value = 0;
    status.textContent = "Uploading…";
    try {
      const answer = await upload(call, file);
      status.textContent = `Imported ${answer.samples} samples of ${answer.peers.length} peers; opening the call…`;
      await waitUntilReadable(call);
      window.location.assign(RS.callUrl(call));
    } catch (error) {
      showError(`Not imported: ${error.message}`);
      status.textContent = "";
      progress.hidden = true;
      busy = false;
      refresh();
    }
  });
  refresh();
})();
