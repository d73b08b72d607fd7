// Progressive touches only; every page works without this file.
document.addEventListener("click", function (e) {
  var btn = e.target.closest("[data-copy]");
  if (!btn) return;
  var field = document.getElementById(btn.getAttribute("data-copy"));
  field.select();
  var label = btn.textContent;
  var done = function () { btn.textContent = btn.getAttribute("data-done") || label; setTimeout(function () { btn.textContent = label; }, 1500); };
  if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); }); }
  else { document.execCommand("copy"); done(); }
});
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) e.preventDefault();
});
// the menu button on narrow screens
document.addEventListener("click", function (e) {
  var btn = e.target.closest(".menu-button");
  if (!btn) return;
  var nav = document.getElementById(btn.getAttribute("aria-controls"));
  var open = nav.classList.toggle("open");
  btn.setAttribute("aria-expanded", open ? "true" : "false");
});
// a form sent back with errors: the first field in error gets the focus
document.addEventListener("DOMContentLoaded", function () {
  var first = document.querySelector("[aria-invalid=true]");
  if (first) first.focus();
});
