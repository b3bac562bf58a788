// The Adapters page: upload with a progress bar (the form posts as usual without it).
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("adapter-upload");
  if (!form || !window.FormData) return;
  const box = document.getElementById("upload-progress");
  const bar = box.querySelector("progress");
  const percent = box.querySelector(".percent");
  const error = document.getElementById("upload-error");
  const button = form.querySelector("button[type=submit]");

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    error.hidden = true;
    box.hidden = false;
    bar.value = 0;
    percent.textContent = "0%";
    button.disabled = true;
    request.upload.addEventListener("progress", (progress) => {
      if (!progress.lengthComputable) return;
      const done = Math.round((100 * progress.loaded) / progress.total);
      bar.value = done;
      percent.textContent = done === 100 ? "100% — checking the file…" : `${done}%`;
    });
    request.addEventListener("load", () => {
      button.disabled = false;
      if (request.status === 201) {
        window.location.reload();
        return;
      }
      let message = `The upload failed (${request.status}).`;
      try {
        message = JSON.parse(request.responseText).error.message;
      } catch (err) { /* not JSON: keep the status */ }
      box.hidden = true;
      error.textContent = message;
      error.hidden = false;
    });
    request.addEventListener("error", () => {
      button.disabled = false;
      box.hidden = true;
      error.textContent = "The upload was interrupted; try again.";
      error.hidden = false;
    });
    request.send(new FormData(form));
  });
});
