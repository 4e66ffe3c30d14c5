/* Applies the saved or system colour theme before the page paints (no flash).
   app.js wires the toggle button; the choice lives in localStorage. */
(function () {
  var root = document.documentElement;
  var media = window.matchMedia("(prefers-color-scheme: dark)");
  function saved() {
    try { return localStorage.getItem("convassist-theme"); } catch (e) { return null; }
  }
  function apply() {
    var choice = saved();
    root.dataset.theme = choice === "light" || choice === "dark" ? choice : (media.matches ? "dark" : "light");
  }
  apply();
  media.addEventListener("change", apply);
})();
