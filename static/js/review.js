// Keyboard shortcuts for the mismatch review queue. The page works without this file:
// every key only ticks a radio button, focuses a field or submits a real form.
(function () {
  "use strict";

  var CHOICES = { "0": "label", "1": "label", u: "label", a: "wording", b: "wording", n: "wording" };

  function decisionForm() {
    return document.getElementById("decision-form");
  }

  function submit(form) {
    if (!form) return;
    // htmx binds swapped-in content only when it settles (about 20 ms after the swap): a key
    // pressed the moment a card appears would post its form the plain way and reload the page.
    // Binding it now is harmless when htmx has done so already.
    if (window.htmx) window.htmx.process(form);
    // requestSubmit runs the browser's validation and fires "submit", which htmx handles.
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  }

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select" || target.isContentEditable) return true;
    if (tag !== "input") return false;
    var type = (target.getAttribute("type") || "text").toLowerCase();
    return ["radio", "checkbox", "button", "submit"].indexOf(type) === -1;
  }

  // The text selected inside wording A or B, if any: `q` puts it in the quote field.
  function selectedWording() {
    var selection = window.getSelection ? window.getSelection() : null;
    if (!selection || selection.isCollapsed || !selection.rangeCount) return "";
    var node = selection.getRangeAt(0).commonAncestorContainer;
    var element = node.nodeType === 1 ? node : node.parentElement;
    if (!element || !element.closest(".side .wording")) return "";
    return selection.toString().split(/\s+/).join(" ").trim();
  }

  // The deciding clause's words in A, when the card shows one.
  function computedClause() {
    var clause = document.getElementById("deciding-a");
    var text = clause ? clause.getAttribute("data-quote") || "" : "";
    return text.split(/\s+/).join(" ").trim();
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.isComposing) return;
    var target = event.target;
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "z" && !event.ctrlKey && !event.metaKey && !isTyping(target)) {
      // Undo the last decision: on a card or on the empty queue alike.
      var undo = document.getElementById("undo-form");
      if (undo) {
        event.preventDefault();
        submit(undo);
      }
      return;
    }
    var form = decisionForm();
    if (!form) return;

    if (isTyping(target)) {
      if (!form.contains(target)) return; // the filter form: leave it alone
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submit(form);
      } else if (event.key === "Escape") {
        target.blur();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey) return;
    // Enter on a focused button or link does what that button or link says.
    if (event.key === "Enter" && target.closest && target.closest("button, a, summary")) return;

    if (Object.prototype.hasOwnProperty.call(CHOICES, key)) {
      var radio = form.querySelector(
        'input[type="radio"][name="' + CHOICES[key] + '"][value="' + key + '"]'
      );
      if (radio) {
        event.preventDefault();
        radio.checked = true;
      }
    } else if (key === "q" || key === "t") {
      var field = form.querySelector(key === "q" ? '[name="quote"]' : '[name="note"]');
      if (field) {
        event.preventDefault();
        var quoted = key === "q" ? selectedWording() : "";
        // Nothing selected: the clause an explain run found deciding this mismatch, quoted
        // in one key and left selected: Enter saves it, typing replaces it.
        var computed = key === "q" && !quoted ? computedClause() : "";
        var text = quoted || computed;
        if (text) {
          field.value = text.slice(0, field.maxLength > 0 ? field.maxLength : text.length);
          field.dispatchEvent(new Event("input", { bubbles: true }));
        }
        field.focus();
        if (computed && field.select) field.select();
      }
    } else if (key === "s") {
      event.preventDefault();
      submit(document.getElementById("skip-form"));
    } else if (key === "r") {
      // Reuse the earlier decision shown on the card (only there when one exists).
      var reuse = document.getElementById("reuse-form");
      if (reuse) {
        event.preventDefault();
        submit(reuse);
      }
    } else if (key === "Enter") {
      event.preventDefault();
      submit(form);
    }
  });

  // htmx gives focus back to the element with the same id after a swap: on a new task that
  // would leave the reviewer typing into the note field instead of pressing shortcuts.
  // It does so before "htmx:afterSwap", which runs before the browser handles the next key.
  document.body.addEventListener("htmx:afterSwap", function () {
    var area = document.getElementById("task-area");
    var active = document.activeElement;
    if (!area) return;
    if (active && active !== document.body && area.contains(active)) active.blur();
    // Keep the content being judged in view: after a save the form is on screen, and the next
    // card's content would sit above it, out of sight.
    var content = document.getElementById("task-content");
    var card = area.querySelector(".task-card");
    if (content) content.scrollIntoView({ block: "start" });
    else if (card) card.scrollIntoView({ block: "nearest" });
  });
})();
