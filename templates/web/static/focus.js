// After a refused form (the page shows role="alert"), move the focus to the first field marked invalid,
// so a keyboard or screen-reader user lands where the correction is needed (issue 16, point 7). A static
// file: the Content-Security-Policy allows scripts from 'self' only, no inline script.
(function () {
  if (!document.querySelector("[role=alert]")) { return; }
  var first = document.querySelector("[aria-invalid=true], input.invalid, textarea.invalid, select.invalid");
  if (first && typeof first.focus === "function") {
    first.focus();
    if (first.scrollIntoView) { first.scrollIntoView({block: "center"}); }
  }
})();
