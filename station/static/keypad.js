// On-screen keypads for a touchscreen without a keyboard, and a guard against a double-tapped submit.
// The server is idempotent anyway (each form carries its transaction UUID); this only spares a second request.
(function () {
  "use strict";

  function activate(field) {
    document.querySelectorAll("input[data-keypad]").forEach(function (el) {
      el.classList.toggle("active", el === field);
    });
    document.querySelectorAll(".keypad").forEach(function (pad) {
      pad.dataset.active = field.id;
    });
  }

  document.addEventListener("click", function (event) {
    var key = event.target.closest("[data-key]");
    if (key) {
      var pad = key.closest(".keypad");
      var input = document.getElementById(pad.dataset.active || pad.dataset.target);
      if (!input) { return; }
      var k = key.dataset.key;
      var limit = input.maxLength > 0 ? input.maxLength : 32;
      if (k === "back") {
        input.value = input.value.slice(0, -1);
      } else if (k === "clear") {
        input.value = "";
      } else if (input.value.length < limit) {
        input.value += k;
      }
      input.dispatchEvent(new Event("input", { bubbles: true }));
      if (input.hasAttribute("data-scanner")) { input.focus(); }
      return;
    }
    var phrase = event.target.closest("[data-append]");
    if (phrase) {
      var box = document.getElementById(phrase.dataset.target);
      var added = (box.value ? box.value + " " : "") + phrase.dataset.append;
      if (added.length <= (box.maxLength > 0 ? box.maxLength : 200)) { box.value = added; }
      return;
    }
    var field = event.target.closest("input[data-keypad]");
    if (field) { activate(field); }
  });

  // A USB QR scanner types like a keyboard: whatever it types outside a text field goes to the scanner field,
  // so a scan lands there even after a tap elsewhere moved the focus away.
  document.addEventListener("keydown", function (event) {
    var field = document.querySelector("input[data-scanner]");
    var active = document.activeElement;
    if (field && active !== field && !(active && active.matches("input, textarea"))) { field.focus(); }
  }, true);

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.sent) {
      event.preventDefault();
    } else {
      form.dataset.sent = "1";
    }
  });
})();
