// One key per suspected gold error on the gold audit page. The page works without this file:
// each key only submits one of the entry's real forms (confirm, correct), which htmx posts.
(function () {
  "use strict";

  var ACTIONS = { c: "confirm", f: "correct" };

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  // The entry holding the focus, else the first one still open.
  function selected() {
    var active = document.activeElement;
    var entry = active && active.closest ? active.closest(".suspect[data-open]") : null;
    return entry || document.querySelector(".suspect[data-open]");
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
    if (isTyping(event.target)) return;
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (!Object.prototype.hasOwnProperty.call(ACTIONS, key)) return;
    var entry = selected();
    var form = entry ? entry.querySelector('form[data-action="' + ACTIONS[key] + '"]') : null;
    if (!form) return;
    event.preventDefault();
    // Sent: the next key goes to the next entry, not to this one again while htmx waits.
    entry.removeAttribute("data-open");
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  });
})();
