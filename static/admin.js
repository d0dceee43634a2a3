// Dashboard behaviour that needs script. Loaded as a file: the CSP allows no inline script.
// Every page works without it; htmx upgrades forms and links to partial swaps.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // htmx 2 sends hx-delete parameters in the URL, so the token travels in a header.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });

  // Confirmations without inline handlers: <form data-confirm="Remove this origin?">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
