// Clearway console: the idle warning and pausing the dashboard's refresh.
// No inline script anywhere (the Content-Security-Policy allows scripts
// from this origin only), no eval.
(function () {
  "use strict";
  var WARN_BEFORE_MS = 2 * 60 * 1000;
  var IDLE_MS = 15 * 60 * 1000;
  var body = document.body;
  var left = Number(body.getAttribute("data-idle-left-ms") || "0");
  var dialog = document.getElementById("idle-warning");
  if (left > 0 && dialog) {
    var deadline = Date.now() + left;
    var tick = function () {
      var now = Date.now();
      if (now >= deadline) {
        window.location.assign("/console/sign-in");
        return;
      }
      dialog.hidden = deadline - now > WARN_BEFORE_MS;
      window.setTimeout(tick, 1000);
    };
    document.getElementById("idle-stay").addEventListener("click", function () {
      fetch("/console/keepalive", { method: "POST", credentials: "same-origin" }).then(function (r) {
        if (r.status === 204) {
          deadline = Date.now() + IDLE_MS;
          dialog.hidden = true;
        } else {
          window.location.assign("/console/sign-in");
        }
      });
    });
    // A person's own htmx requests count as activity (the refresh does not).
    body.addEventListener("htmx:afterRequest", function (e) {
      var h = e.detail && e.detail.requestConfig && e.detail.requestConfig.headers;
      if (e.detail.successful && !(h && h["X-Console-Poll"])) {
        deadline = Date.now() + IDLE_MS;
      }
    });
    window.setTimeout(tick, 1000);
  }
  var pause = document.getElementById("pause-refresh");
  if (pause) {
    pause.addEventListener("click", function () {
      var paused = pause.getAttribute("aria-pressed") !== "true";
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      pause.textContent = paused ? "Resume refresh" : "Pause refresh";
    });
    body.addEventListener("htmx:beforeRequest", function (e) {
      if (pause.getAttribute("aria-pressed") === "true" && e.detail.elt && e.detail.elt.id === "live") {
        e.preventDefault();
      }
    });
  }
})();
