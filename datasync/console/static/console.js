// DataSync console: refresh the page's <main> every data-refresh seconds (no library).
// ?refresh=N in the address changes the interval. Skips a refresh while the tab is hidden, a form field has focus, or text is selected.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var asked = parseInt(new URLSearchParams(window.location.search).get("refresh") || "0", 10);
  if (seconds && asked >= 1) { seconds = asked; }  // ?refresh=N: every N seconds instead
  if (!seconds || !window.fetch || !window.DOMParser) { return; }
  function busy() {
    var el = document.activeElement;
    var typing = el && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName);
    var selecting = window.getSelection && String(window.getSelection()).length > 0;
    return document.hidden || typing || selecting;
  }
  function refresh() {
    if (busy()) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main && !busy()) { main.innerHTML = fresh.innerHTML; }
      })
      .catch(function () { /* keep the page as it is; the next tick retries */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
