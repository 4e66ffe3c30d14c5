/* Conversation Assistant: the little the pages need beyond HTMX.
   Theme toggle, time zone cookie, toasts, confirmation dialog, countdowns, the message
   thread's scrolling, in-place editing of suggestions, copy buttons, and pausing polls
   while the owner is busy with the polled part of the page. No inline scripts (CSP). */
(function () {
  "use strict";

  var root = document.documentElement;

  /* ---- theme ---- */
  function updateThemeButton() {
    var dark = root.dataset.theme === "dark";
    document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
      button.setAttribute("aria-label", dark ? "Switch to light theme" : "Switch to dark theme");
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-theme-toggle]");
    if (!button) return;
    var next = root.dataset.theme === "dark" ? "light" : "dark";
    root.dataset.theme = next;
    try { localStorage.setItem("convassist-theme", next); } catch (e) { /* private mode */ }
    updateThemeButton();
  });

  /* ---- time zone, so the server renders times in the owner's zone ---- */
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var current = document.cookie.split("; ").find(function (c) { return c.indexOf("convassist_tz=") === 0; });
    if (zone && current !== "convassist_tz=" + encodeURIComponent(zone)) {
      document.cookie = "convassist_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* no Intl: times stay in UTC */ }

  /* ---- toasts ---- */
  function scheduleDismiss(toast) {
    if (toast.dataset.scheduled) return;
    toast.dataset.scheduled = "1";
    setTimeout(function () { toast.remove(); }, toast.classList.contains("toast-error") ? 10000 : 5000);
  }
  function showToast(message, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var toast = document.createElement("div");
    toast.className = "toast toast-" + (kind || "success");
    toast.setAttribute("role", kind === "error" ? "alert" : "status");
    var text = document.createElement("p");
    text.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.setAttribute("data-dismiss", "");
    close.textContent = "×";
    toast.append(text, close);
    box.append(toast);
    scheduleDismiss(toast);
  }
  document.body.addEventListener("toast", function (event) {
    showToast(event.detail.message, event.detail.kind);
  });
  document.addEventListener("click", function (event) {
    var close = event.target.closest("[data-dismiss]");
    if (close) close.closest(".toast").remove();
  });
  document.body.addEventListener("htmx:sendError", function () {
    showToast("Can't reach the server. Check that it is running, then try again.", "error");
  });

  /* ---- confirmation dialog for hx-confirm ---- */
  document.body.addEventListener("htmx:confirm", function (event) {
    var question = event.detail.question;
    var dialog = document.getElementById("confirm-dialog");
    if (!question || !dialog || typeof dialog.showModal !== "function") return;
    event.preventDefault();
    var source = event.detail.elt.closest("[data-confirm-label]");
    dialog.querySelector("#confirm-text").textContent = question;
    dialog.querySelector("[data-confirm-button]").textContent = source ? source.dataset.confirmLabel : "Confirm";
    dialog.returnValue = "";
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue === "confirm") event.detail.issueRequest(true);
    });
    dialog.showModal();
  });

  /* ---- polls ([data-poll]) pause while the owner works inside the polled part, has a
     dialog open (a confirmation would lose its target) or looks away ---- */
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var config = event.detail.requestConfig;
    if (!elt.hasAttribute("data-poll") || (config && config.triggeringEvent)) return;
    if (document.hidden || elt.contains(document.activeElement) || document.querySelector("dialog[open]")) {
      event.preventDefault();
    }
  });

  /* ---- countdowns (device codes) ---- */
  function tick() {
    document.querySelectorAll("[data-expires]").forEach(function (badge) {
      var left = Math.max(0, Math.floor((Date.parse(badge.dataset.expires) - Date.now()) / 1000));
      var out = badge.querySelector("[data-countdown]");
      if (left === 0) {
        badge.classList.add("is-expired");
        badge.textContent = "Code expired";
      } else if (out) {
        out.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      }
    });
  }
  setInterval(tick, 1000);

  /* ---- message thread: start at the newest, keep the view still while older loads ---- */
  var thread = document.getElementById("thread");
  if (thread) thread.scrollTop = thread.scrollHeight;
  var fromBottom = null;
  var followCard = null;
  function inView(elt) {
    var box = elt.getBoundingClientRect();
    var frame = thread ? thread.getBoundingClientRect() : { top: 0, bottom: window.innerHeight };
    return box.bottom > frame.top && box.top < frame.bottom;
  }
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (thread && target.classList.contains("thread-sentinel")) {
      fromBottom = thread.scrollHeight - thread.scrollTop;
    }
    /* A suggestion the owner is watching stays in view as it grows. */
    followCard = target.classList.contains("suggestion") && inView(target) ? target.id : null;
  });
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (thread && fromBottom !== null && event.detail.target.classList.contains("thread-sentinel")) {
      thread.scrollTop = thread.scrollHeight - fromBottom;
      fromBottom = null;
      mergeDayBreaks();
    }
    if (followCard) {
      var grown = document.getElementById(followCard);
      if (grown) grown.scrollIntoView({ block: "nearest", behavior: "smooth" });
      followCard = null;
    }
    var elt = event.detail.elt;
    if (event.detail.requestConfig && event.detail.requestConfig.verb === "post" && elt.classList && elt.classList.contains("suggest-form")) {
      var card = event.detail.target.lastElementChild;
      if (card) card.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  });
  /* A page of older messages ends on the day the next page starts with: drop the repeat. */
  function mergeDayBreaks() {
    document.querySelectorAll(".thread-page").forEach(function (page) {
      var breaks = page.querySelectorAll(":scope > .thread-break[data-day]");
      var next = page.nextElementSibling;
      if (!breaks.length || !next || !next.matches(".thread-break[data-day]")) return;
      if (breaks[breaks.length - 1].dataset.day === next.dataset.day) next.remove();
    });
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-jump]");
    if (!link) return;
    var target = document.querySelector(link.getAttribute("href"));
    event.preventDefault();
    if (!target) {
      showToast("That message is further back: scroll up in the conversation to load it.", "info");
      return;
    }
    target.scrollIntoView({ block: "center", behavior: "smooth" });
    target.classList.add("is-target");
    setTimeout(function () { target.classList.remove("is-target"); }, 2000);
  });

  /* ---- keyboard for elements acting as buttons ---- */
  document.addEventListener("keydown", function (event) {
    var elt = event.target;
    if ((event.key === "Enter" || event.key === " ") && elt.matches && elt.matches("div[role=button]")) {
      event.preventDefault();
      elt.click();
    }
  });

  /* ---- edit a suggestion in place ---- */
  function setEditing(form, editing) {
    var candidate = form.closest(".candidate");
    var toggle = candidate.querySelector("[data-edit-toggle]");
    form.hidden = !editing;
    candidate.classList.toggle("is-editing", editing);
    toggle.setAttribute("aria-expanded", String(editing));
    if (editing) {
      var area = form.querySelector("textarea");
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    } else {
      toggle.focus();
    }
  }
  document.addEventListener("click", function (event) {
    var open = event.target.closest("[data-edit-toggle]");
    var cancel = event.target.closest("[data-edit-cancel]");
    if (open) setEditing(document.getElementById(open.dataset.editToggle), true);
    if (cancel) setEditing(document.getElementById(cancel.dataset.editCancel), false);
  });
  document.addEventListener("keydown", function (event) {
    var form = event.target.closest && event.target.closest(".candidate-edit");
    if (form && event.key === "Escape") setEditing(form, false);
  });

  /* ---- copy a reply ---- */
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var text = button.dataset.copy;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { showToast("Copied to the clipboard.", "success"); },
        function () { showToast("Couldn't copy: select the text and copy it yourself.", "error"); }
      );
    } else {
      showToast("Copying needs HTTPS or localhost: select the text and copy it yourself.", "info");
    }
  });

  /* ---- on every page and after every swap ---- */
  function init(scope) {
    scope.querySelectorAll(".toast").forEach(scheduleDismiss);
    updateThemeButton();
    tick();
  }
  document.addEventListener("htmx:load", function (event) { init(event.detail.elt.parentElement || document); });
  init(document);
})();
