/* The inbox: keyboard (j/k move, 1-3 pick, e edit, Enter send, / search), editing a reply
   in place, and the list's refresh every few seconds, which waits while the owner edits a
   reply and keeps their place (the conversation they are on, and focus) across it. */
(function () {
  "use strict";

  var current = null; /* id of the row (li.inbox-row) the owner is on */
  var focusAfter = null; /* where focus goes once a swap settles: { row, index } */
  var lastCount = null;
  var currentIndex = -1; /* its place in the list, for when a refresh drops it */
  var pickedIn = {}; /* row id -> the reply picked there (1-3), kept across refreshes */

  function rows() { return Array.prototype.slice.call(document.querySelectorAll(".inbox-row")); }
  function itemOf(row) { return row && row.querySelector("[data-inbox-item]"); }
  function currentRow() {
    var row = current && document.getElementById(current);
    return row && row.classList.contains("inbox-row") ? row : null;
  }
  function typing(elt) {
    return elt && elt.matches && elt.matches("textarea, input:not([type=hidden]), select, [contenteditable]");
  }
  function busy() {
    var list = document.getElementById("inbox-list");
    var active = document.activeElement;
    return !list || document.hidden || !!document.querySelector("dialog[open]") ||
      (list.contains(active) && typing(active)) ||
      !!list.querySelector(".inbox-candidate .inbox-edit:not([hidden]), .inbox-own[open], .htmx-request");
  }

  function select(row, focus) {
    rows().forEach(function (r) {
      var item = itemOf(r);
      if (item) item.classList.toggle("is-current", r === row);
    });
    if (!row) return;
    current = row.id;
    currentIndex = rows().indexOf(row);
    if (focus) {
      var item = itemOf(row);
      item.focus({ preventScroll: true });
      item.scrollIntoView({ block: "nearest" });
    }
  }
  function move(step) {
    var list = rows();
    if (!list.length) return;
    var at = list.indexOf(currentRow());
    var next = at < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, at + step));
    select(list[next], true);
  }
  function candidates(row) { return row ? Array.prototype.slice.call(row.querySelectorAll("[data-candidate]")) : []; }
  function picked(row) { return row && (row.querySelector(".inbox-candidate.is-picked") || candidates(row)[0]); }
  function mark(row, n) {
    var list = candidates(row);
    var chosen = list[n - 1];
    if (!chosen) return null;
    list.forEach(function (c) { c.classList.toggle("is-picked", c === chosen); });
    pickedIn[row.id] = n;
    return chosen;
  }
  function pick(row, n) {
    var chosen = mark(row, n);
    if (chosen) chosen.querySelector("[data-send]").focus();
  }

  function setEditing(form, editing) {
    var candidate = form.closest(".inbox-candidate");
    var toggle = candidate && candidate.querySelector("[data-inbox-edit]");
    form.hidden = !editing;
    if (toggle) toggle.setAttribute("aria-expanded", String(editing));
    if (editing) {
      var area = form.querySelector("textarea");
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    } else if (toggle) {
      toggle.focus();
    }
  }
  function edit(row) {
    var candidate = picked(row);
    if (candidate) {
      setEditing(candidate.querySelector(".inbox-edit"), true);
    } else if (row) {
      var own = row.querySelector(".inbox-own");
      own.open = true;
      own.querySelector("textarea").focus();
    }
  }

  document.addEventListener("click", function (event) {
    var open = event.target.closest("[data-inbox-edit]");
    var cancel = event.target.closest("[data-inbox-edit-cancel]");
    if (open) setEditing(document.getElementById(open.dataset.inboxEdit), true);
    if (cancel) setEditing(document.getElementById(cancel.dataset.inboxEditCancel), false);
    var row = event.target.closest && event.target.closest(".inbox-row");
    if (row) select(row, false);
  });
  document.addEventListener("focusin", function (event) {
    var row = event.target.closest && event.target.closest(".inbox-row");
    if (row) select(row, false);
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var form = target.closest && target.closest(".inbox-edit");
    if (form && target.matches("textarea")) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (form.reportValidity()) form.requestSubmit();
      } else if (event.key === "Escape" && form.closest(".inbox-candidate")) {
        setEditing(form, false);
      }
      return;
    }
    if (typing(target)) return;
    var row = currentRow();
    if (event.key === "j" || event.key === "k") {
      event.preventDefault();
      move(event.key === "j" ? 1 : -1);
    } else if (event.key === "/") {
      var search = document.getElementById("q");
      if (search) { event.preventDefault(); search.focus(); }
    } else if (event.key === "1" || event.key === "2" || event.key === "3") {
      if (!row) { move(1); row = currentRow(); }
      event.preventDefault();
      pick(row, Number(event.key));
    } else if (event.key === "e") {
      if (!row) { move(1); row = currentRow(); }
      event.preventDefault();
      edit(row);
    } else if (event.key === "Enter" && target.matches && target.matches("[data-inbox-item]")) {
      var candidate = picked(row);
      if (candidate) { event.preventDefault(); candidate.querySelector("[data-send]").click(); }
    }
  });

  /* ---- the refresh: skipped while busy; asks for as many rows as the page shows ---- */
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.hasAttribute("data-inbox-poll") && busy()) event.preventDefault();
  });
  document.body.addEventListener("htmx:configRequest", function (event) {
    if (!event.detail.elt.hasAttribute("data-inbox-poll")) return;
    event.detail.parameters.limit = Math.min(100, Math.max(20, rows().length));
  });
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var active = document.activeElement;
    focusAfter = null;
    if (!target.contains(active)) return;
    var row = active.closest(".inbox-row");
    var next = row && (row.nextElementSibling || row.previousElementSibling);
    var sameRow = target.id === "inbox-list" || event.detail.serverResponse;
    var buttons = row ? Array.prototype.slice.call(row.querySelectorAll("button")) : [];
    focusAfter = {
      row: row ? (sameRow ? row.id : next && next.id) : null,
      index: target.id === "inbox-list" ? buttons.indexOf(active) : -1,
    };
    if (!event.detail.serverResponse) setTimeout(restore, 0);
  });
  function restore() {
    var list = document.getElementById("inbox-list");
    if (!list) return;
    rows().forEach(function (r) { if (pickedIn[r.id]) mark(r, pickedIn[r.id]); });
    var row = currentRow();
    if (focusAfter && focusAfter.row) row = document.getElementById(focusAfter.row);
    if (!row && current && currentIndex >= 0) {
      /* The row the owner was on left the list (answered): stay at its place. */
      var left = rows();
      row = left[Math.min(currentIndex, left.length - 1)] || null;
    }
    if (row && row.classList.contains("inbox-row")) {
      select(row, false);
      if (focusAfter) {
        var buttons = row.querySelectorAll("button");
        var same = row.id === focusAfter.row;
        var again = same && focusAfter.index >= 0 ? buttons[focusAfter.index] : null;
        (again || itemOf(row)).focus({ preventScroll: true });
      }
    }
    focusAfter = null;
    var count = list.dataset.count;
    if (lastCount !== null && count !== lastCount) {
      var status = document.getElementById("inbox-status");
      if (status) status.textContent = count === "1" ? "1 conversation waits for a reply." : count + " conversations wait for a reply.";
    }
    lastCount = count;
  }
  /* After a swap; an empty answer (a dismissed row) swaps nothing in, so no event follows. */
  document.body.addEventListener("htmx:afterSwap", restore);
  var list = document.getElementById("inbox-list");
  if (list) lastCount = list.dataset.count;
})();
