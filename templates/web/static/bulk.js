// "本页全选" on the list of branches: ticks or clears every row's checkbox (the server also honours the
// box itself, so the form works without this script).
(function () {
  var all = document.getElementById("select-all");
  if (!all) { return; }
  all.addEventListener("change", function () {
    var boxes = document.querySelectorAll("input.pick");
    for (var i = 0; i < boxes.length; i++) { boxes[i].checked = all.checked; }
  });
})();
