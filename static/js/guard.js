// Unsaved-changes guard: leaving a page (a link, reload, closing the tab, an htmx-boosted
// navigation) asks first when a guarded form holds typed text that was not submitted.
//
// Guarded: every form marked `data-guard`, and every form with a textarea (the policy editor,
// the review note) unless marked `data-guard="off"`. Changed means a text field's value differs
// from the one the page was served with (typing then deleting it back is no change). Submitting
// the form clears its guard.
(function () {
  "use strict";

  var MESSAGE = "You have unsaved changes on this page. Leave it and lose them?";
  var TEXT_TYPES = ["text", "search", "url", "email", "number", "tel", "password", ""];
  var submitted = typeof WeakSet === "function" ? new WeakSet() : null;

  function guarded(form) {
    var mark = form.getAttribute("data-guard");
    if (mark === "off") return false;
    return mark !== null || form.querySelector("textarea") !== null;
  }

  function changed(form) {
    if (submitted && submitted.has(form)) return false;
    var fields = form.querySelectorAll("textarea, input");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.disabled) continue;
      if (field.tagName.toLowerCase() === "input") {
        var type = (field.getAttribute("type") || "").toLowerCase();
        if (TEXT_TYPES.indexOf(type) === -1) continue;
      }
      if (field.value !== field.defaultValue) return true;
    }
    return false;
  }

  function unsaved() {
    var forms = document.forms;
    for (var i = 0; i < forms.length; i++) {
      if (guarded(forms[i]) && changed(forms[i])) return true;
    }
    return false;
  }

  // A form being submitted is not lost work; htmx hears the same event for hx-post forms.
  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (submitted && form && form.tagName === "FORM") submitted.add(form);
    },
    true
  );

  window.addEventListener("beforeunload", function (event) {
    if (!unsaved()) return;
    event.preventDefault();
    event.returnValue = MESSAGE; // older browsers show it; current ones their own words
    return MESSAGE;
  });

  // htmx-boosted links and forms change the page without unloading it: ask the same question.
  document.addEventListener("htmx:confirm", function (event) {
    var detail = event.detail || {};
    var elt = detail.elt;
    if (!elt || !elt.closest || !elt.closest('[hx-boost="true"]')) return;
    if (elt.tagName === "FORM" && guarded(elt)) return; // submitting the guarded form itself
    if (!unsaved()) return;
    event.preventDefault();
    if (window.confirm(MESSAGE)) detail.issueRequest(true);
  });
})();
