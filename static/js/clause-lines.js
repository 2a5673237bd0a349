// The policy editor: a review-notes link to a clause's lines (data-lines="16-17") selects those
// lines in the policy text and scrolls to them instead of leaving the page. Without this file
// the link opens the version page at those lines.
(function () {
  "use strict";

  function lineOffsets(text, first, last) {
    var start = 0;
    for (var line = 1; line < first; line++) {
      var next = text.indexOf("\n", start);
      if (next === -1) return null;
      start = next + 1;
    }
    var end = start;
    for (var n = first; n <= last; n++) {
      var stop = text.indexOf("\n", end);
      end = stop === -1 ? text.length : stop + (n < last ? 1 : 0);
    }
    return [start, end];
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-lines]") : null;
    var area = document.getElementById("id_text");
    if (!link || !area || !link.closest(".editor-layout")) return;
    var parts = (link.getAttribute("data-lines") || "").split("-");
    var first = parseInt(parts[0], 10);
    var last = parseInt(parts[1] || parts[0], 10);
    if (!(first > 0) || !(last >= first)) return;
    var range = lineOffsets(area.value, first, last);
    if (!range) return;
    event.preventDefault();
    area.focus();
    area.setSelectionRange(range[0], range[1]);
    var style = window.getComputedStyle(area);
    var lineHeight = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.4 || 18;
    area.scrollTop = Math.max(0, (first - 3) * lineHeight);
    area.setAttribute("data-selected-lines", first + "-" + last);
  });
})();
