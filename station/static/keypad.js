// On-screen keypads for a touchscreen without a keyboard, and a guard against a double-tapped submit.
// The server is idempotent anyway (each form carries its transaction UUID); this only spares a second request.
// The number pad types into the number field tapped last (input[data-keypad]); the pinyin keyboard (#imepad, the
// pinyin_keyboard macro) into the text field tapped last (input[data-ime], textarea[data-ime]), its candidates
// from the station (station.ui.ime). Where both share a place (.pads), tapping a field shows its own pad there.
(function () {
  "use strict";

  var FIELDS = "input[data-keypad], input[data-ime], textarea[data-ime]";
  var MAX_PINYIN = 32;
  // The pinyin being typed, the candidate page shown, and a counter that lets only the newest answer through.
  var ime = { field: null, comp: "", page: 0, asked: 0, first: null };

  function showInPads(panel) {
    var pads = panel.closest(".pads");
    if (!pads) { return; }
    Array.prototype.forEach.call(pads.children, function (el) { el.hidden = el !== panel; });
  }

  function activate(field) {
    document.querySelectorAll(FIELDS).forEach(function (el) {
      el.classList.toggle("active", el === field);
    });
    if (field.hasAttribute("data-ime")) {
      var pad = document.getElementById("imepad");
      if (!pad) { return; }
      ime.field = field;
      pad.dataset.active = field.id;
      pad.dataset.field = field.dataset.ime;
      setComposition("");
      showInPads(pad);
      return;
    }
    document.querySelectorAll(".keypad").forEach(function (pad) {
      pad.dataset.active = field.id;
      showInPads(pad);
    });
  }

  function insert(field, text) {
    var limit = field.maxLength > 0 ? field.maxLength : 200;
    if (Array.from(field.value).length + Array.from(text).length > limit) { return false; }
    field.value += text;
    field.dispatchEvent(new Event("input", { bubbles: true }));
    return true;
  }

  // -- the pinyin keyboard ---------------------------------------------------------------------------------
  function el(id) { return document.getElementById(id); }

  function setComposition(comp) {
    ime.comp = comp;
    ime.page = 0;
    ask();
  }

  function showCandidates(answer) {
    var box = el("ime-cands");
    box.textContent = "";
    answer.candidates.forEach(function (c) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "key ime-cand";
      button.textContent = c.text;
      button.dataset.text = c.text;
      button.dataset.used = c.used;
      box.appendChild(button);
    });
    ime.first = answer.candidates.length ? answer.candidates[0] : null;
    el("ime-prev").disabled = ime.page === 0;
    el("ime-next").disabled = !answer.more;
    el("ime-comp").textContent = answer.syllables.length ? answer.syllables.join("'") : ime.comp;
    el("ime-bar").dataset.py = answer.py;
    el("ime-bar").dataset.page = ime.page;
  }

  function ask() {
    var pad = el("imepad");
    var asked = ++ime.asked;
    var bar = el("ime-bar");
    delete bar.dataset.py;
    if (!ime.comp) {
      showCandidates({ py: "", syllables: [], candidates: [], more: false });
      return;
    }
    el("ime-comp").textContent = ime.comp;
    var url = pad.dataset.url + "?py=" + encodeURIComponent(ime.comp) + "&field=" +
      encodeURIComponent(pad.dataset.field) + "&page=" + ime.page;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (asked !== ime.asked) { return; }
        if (answer.ok) { showCandidates(answer.body); } else { el("ime-comp").textContent = answer.body.error; }
      })
      .catch(function () {
        if (asked === ime.asked) { el("ime-comp").textContent = ime.comp + " …"; }
      });
  }

  function pick(text, used) {
    if (!ime.field || !insert(ime.field, text)) { return; }
    setComposition(ime.comp.slice(used).replace(/^'+/, ""));
  }

  // The shown candidates answer the pinyin as typed now: a tap on an older answer's candidate does nothing.
  function current() { return el("ime-bar").dataset.py === ime.comp && ime.comp !== ""; }

  function switchMode(pad) {
    var modes = pad.dataset.modes.split(" ");
    var mode = modes[(modes.indexOf(pad.dataset.mode) + 1) % modes.length];
    pad.dataset.mode = mode;
    pad.querySelectorAll("[data-mode-label]").forEach(function (label) {
      label.hidden = label.dataset.modeLabel !== mode;
    });
    pad.querySelectorAll(".ime-letters, [data-letters]").forEach(function (key) { key.hidden = mode === "123"; });
    pad.querySelector(".ime-digits").hidden = mode !== "123";
    setComposition("");
  }

  function imeKey(pad, key) {
    var field = ime.field;
    if (!field) { return; }
    var k = key.dataset.imeKey;
    var action = key.dataset.ime;
    if (k !== undefined) {
      if (pad.dataset.mode === "py" && /^[a-z]$/.test(k)) {
        if (ime.comp.length < MAX_PINYIN) { setComposition(ime.comp + k); }
        return;
      }
      if (ime.comp && current() && ime.first) { pick(ime.first.text, ime.first.used); }
      if (!ime.comp) { insert(field, k); }
    } else if (action === "sep") {
      if (ime.comp && !ime.comp.endsWith("'") && ime.comp.length < MAX_PINYIN) { setComposition(ime.comp + "'"); }
    } else if (action === "back") {
      if (ime.comp) {
        setComposition(ime.comp.slice(0, -1));
      } else {
        field.value = Array.from(field.value).slice(0, -1).join("");
        field.dispatchEvent(new Event("input", { bubbles: true }));
      }
    } else if (action === "clear") {
      field.value = "";
      setComposition("");
    } else if (action === "space") {
      if (!ime.comp) { insert(field, " "); } else if (current() && ime.first) { pick(ime.first.text, ime.first.used); }
    } else if (action === "mode") {
      switchMode(pad);
    } else if (action === "prev" || action === "next") {
      if (current()) {
        ime.page += action === "next" ? 1 : -1;
        ask();
      }
    } else if (action === "panel") {
      showInPads(el(key.dataset.panelId));
    }
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
    var candidate = event.target.closest(".ime-cand");
    if (candidate) {
      if (current()) { pick(candidate.dataset.text, Number(candidate.dataset.used)); }
      return;
    }
    var imeButton = event.target.closest("#imepad button");
    if (imeButton) {
      imeKey(el("imepad"), imeButton);
      return;
    }
    var phrase = event.target.closest("[data-append]");
    if (phrase) {
      var box = document.getElementById(phrase.dataset.target);
      var added = (box.value ? box.value + " " : "") + phrase.dataset.append;
      if (added.length <= (box.maxLength > 0 ? box.maxLength : 200)) { box.value = added; }
      return;
    }
    var show = event.target.closest("[data-show-ime]");
    if (show) {
      activate(document.getElementById(show.dataset.showIme));
      return;
    }
    var field = event.target.closest(FIELDS);
    if (field) { activate(field); }
  });

  // The field waiting for input when the screen opens (e.g. the payee's name once the account is in).
  var start = document.querySelector(FIELDS.split(", ").map(function (s) { return s + "[data-start]"; }).join(", "));
  if (start) { activate(start); }

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
