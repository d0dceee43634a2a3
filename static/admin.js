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

  // Copy buttons: <button data-copy="element-id" hidden>. Shown only where the clipboard
  // can be written; without script the text stays there to select by hand.
  function enableCopyButtons(root) {
    if (!navigator.clipboard) {
      return;
    }
    root.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
    });
  }
  document.addEventListener("DOMContentLoaded", function () { enableCopyButtons(document); });
  document.addEventListener("htmx:afterSwap", function (event) {
    enableCopyButtons(event.detail.target.parentNode || document);
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    var source = button && document.getElementById(button.dataset.copy);
    if (source) {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
      });
    }
  });

  // htmx swaps no error response. A 503 that names its own target (HX-Retarget: the server's
  // notice that the database is unreachable) is shown there, replacing an earlier notice;
  // other errors, a proxy's 503 included, still never land in a table cell. The notice goes
  // once a request succeeds again.
  // The dashboard's own error notices (403, 404, 500: #request-error) are shown the same way.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    var notice = document.getElementById("database-unreachable");
    var retarget = xhr.status >= 400 && xhr.getResponseHeader("HX-Retarget");
    var outage = xhr.status === 503 && retarget;
    if (notice && (outage || xhr.status < 400)) {
      notice.remove();
    }
    var earlier = document.getElementById("request-error");
    if (earlier && (retarget || xhr.status < 400)) {
      earlier.remove();
    }
    if (retarget) {
      event.detail.shouldSwap = true;
    }
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
