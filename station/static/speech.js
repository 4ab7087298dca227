// The confirm screen's "read aloud" button: plays the amount the station spoke (station.speech) from the start.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-audio]");
    if (!button) { return; }
    var audio = document.getElementById(button.dataset.audio);
    if (!audio) { return; }
    audio.currentTime = 0;
    var playing = audio.play();
    if (playing && playing.catch) { playing.catch(function () { button.disabled = true; }); }
  });
})();
