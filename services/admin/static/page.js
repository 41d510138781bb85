// The operator page. It asks for the admin token once and keeps it in this
// tab's sessionStorage (gone when the tab closes; never in a cookie, a URL or
// the page), and adds it to every htmx request as "Authorization: Bearer".
// Reads are HTML fragments from /page/*; actions post JSON to the /v1 API
// itself (the json-body extension), so they are checked and audited exactly
// as any API call. Everything shown from an answer is set as text.
(function () {
  "use strict";
  const KEY = "sluice-admin-token";
  const body = document.body;
  const insecureDev = body.dataset.insecureDev === "1"; // no token asked for at all
  const flash = document.getElementById("flash");
  const tokenForm = document.getElementById("token-form");
  const problem = document.getElementById("token-problem");

  function token() {
    return sessionStorage.getItem(KEY) || (insecureDev ? "" : null);
  }

  // The one message line: an action's outcome, or why a request failed. A failed
  // read ("read") is cleared by the next read that succeeds.
  function say(text, isError, kind) {
    flash.textContent = text;
    flash.className = isError ? "error" : "";
    flash.dataset.kind = kind || "";
    flash.hidden = !text;
  }

  function refresh() {
    htmx.trigger(body, "sluice:refresh");
  }

  function signedIn(yes, why) {
    body.classList.toggle("signed-in", yes);
    problem.textContent = why || "";
    problem.hidden = !why;
    if (!yes) {
      for (const s of document.querySelectorAll("main > section[hx-get], [data-fragment], #session")) {
        s.replaceChildren();
      }
      say("");
      tokenForm.elements.token.focus();
    }
  }

  // A section is not refreshed while someone is typing in it (a pause reason).
  function typingIn(elt) {
    return Array.from(elt.querySelectorAll("input")).some(
      (i) => i.value !== "" || i === document.activeElement);
  }

  // The error an answer carries: FastAPI's {"detail": ...} (a string, or a list of field errors).
  function detail(status, text) {
    try {
      const d = JSON.parse(text).detail;
      if (Array.isArray(d)) return d.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
      return String(d);
    } catch (_) {
      return `HTTP ${status}`;
    }
  }

  function tokenRefused() {
    sessionStorage.removeItem(KEY);
    signedIn(false, "That token was not accepted. Enter the operator or the viewer token.");
  }

  htmx.defineExtension("json-body", {
    onEvent(name, evt) {
      if (name === "htmx:configRequest") evt.detail.headers["Content-Type"] = "application/json";
    },
    encodeParameters(xhr, parameters) {
      xhr.overrideMimeType("text/json");
      return JSON.stringify(Object.fromEntries(parameters));
    },
  });

  body.addEventListener("htmx:configRequest", (evt) => {
    const t = token();
    const elt = evt.detail.elt;
    if (t === null || (evt.detail.verb === "get" && elt.matches("section") && typingIn(elt))) {
      evt.preventDefault();
      return;
    }
    if (t) evt.detail.headers.Authorization = `Bearer ${t}`;
    if (elt.closest("#dlq-filter")) {
      // an empty filter (kind "any", no key) is no filter at all
      for (const [name, value] of Object.entries(evt.detail.parameters)) {
        if (value === "") delete evt.detail.parameters[name];
      }
    }
  });

  // The DLQ view: a record's row opens its detail; "Replay…" asks, showing the dry run's
  // estimate and a new replay id, posts the replay to /v1/replays (audited there), then
  // shows its progress, which polls itself until the task ends.
  body.addEventListener("click", (evt) => {
    const row = evt.target.closest("tr.dlq-record");
    if (row) {
      row.nextElementSibling.hidden = !row.nextElementSibling.hidden;
      return;
    }
    const button = evt.target.closest("button.replay");
    if (button && !button.disabled) replay(button);
  });

  function newReplayId() {
    const stamp = new Date().toISOString().replace(/[^0-9]/g, "").slice(0, 14);
    return `page-${stamp}-${Math.random().toString(36).slice(2, 8)}`;
  }

  async function replay(button) {
    const id = newReplayId();
    const summary = button.closest(".estimate").dataset.summary;
    if (!window.confirm(`Replay? ${summary}.\n\nreplay id: ${id}`)) return;
    const t = token();
    if (t === null) return;
    const headers = { "Content-Type": "application/json" };
    if (t) headers.Authorization = `Bearer ${t}`;
    const request = { ...JSON.parse(button.dataset.request), replay_id: id };
    button.disabled = true;
    let answer;
    try {
      answer = await fetch("/v1/replays", { method: "POST", headers, body: JSON.stringify(request) });
    } catch (_) {
      say("The admin service cannot be reached.", true);
      button.disabled = false;
      return;
    }
    if (answer.status === 401) {
      tokenRefused();
      return;
    }
    if (!answer.ok) {
      say(detail(answer.status, await answer.text()), true);
      button.disabled = false;
      return;
    }
    say(`replay ${id} started`, false);
    const slot = document.getElementById("dlq-progress-slot");
    htmx.ajax("GET", `/page/dlq/replays/${encodeURIComponent(id)}`, { target: slot, swap: "innerHTML" });
    refresh();
  }

  body.addEventListener("htmx:afterRequest", (evt) => {
    const d = evt.detail;
    if (d.successful && d.requestConfig.verb === "get" && flash.dataset.kind === "read") {
      say("");
    }
    if (d.successful && d.requestConfig.verb === "post") {
      const form = d.elt.closest("form");
      if (form) form.reset();
      document.activeElement.blur();
      say(d.elt.closest("[data-done]")?.dataset.done || "done", false);
      refresh();
    }
  });

  body.addEventListener("htmx:responseError", (evt) => {
    const xhr = evt.detail.xhr;
    if (xhr.status === 401) {
      tokenRefused();
      return;
    }
    say(detail(xhr.status, xhr.responseText), true,
        evt.detail.requestConfig.verb === "get" ? "read" : "");
  });

  body.addEventListener("htmx:sendError", () => {
    say("The admin service cannot be reached; the page keeps trying.", true, "read");
  });

  tokenForm.addEventListener("submit", (evt) => {
    evt.preventDefault();
    const input = tokenForm.elements.token;
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    signedIn(true);
    refresh();
  });

  document.getElementById("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    signedIn(false);
  });

  signedIn(token() !== null);
})();
