// imagehub pages: a few progressive enhancements, nothing the pages need to work.
document.addEventListener("DOMContentLoaded", () => {
  // The one-time reveal dialog opens by itself.
  // Closing it removes the secret from the page.
  document.querySelectorAll("dialog[data-open]").forEach((dialog) => {
    dialog.addEventListener("close", () => dialog.remove());
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
  });

  // Copy buttons: data-copy="#input-selector".
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = document.querySelector(button.dataset.copy);
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (err) {
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  });

  // Forms that destroy something ask first.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // The organization switcher switches on change.
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
});
