// Forms marked data-confirm ask before they are sent (delete, stop).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// Copy buttons: data-copy names the field whose text they copy.
document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  const field = button && document.getElementById(button.dataset.copy);
  if (field) {
    navigator.clipboard.writeText(field.value).then(() => { button.textContent = "Copied"; }, () => field.select());
  }
});
