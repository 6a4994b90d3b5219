// dgprm report: search, expand/collapse, sortable tables. No network, no libraries.
(function () {
  "use strict";
  var all = function (selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  };

  // ---- tree search --------------------------------------------------------------------
  var input = document.getElementById("tree-search");
  var counter = document.getElementById("search-count");
  var noMatch = document.getElementById("no-match");
  var parents = all("ul.tree > li.parent");

  function highlight(element, query) {
    if (element.dataset.plain === undefined) element.dataset.plain = element.textContent;
    var text = element.dataset.plain;
    while (element.firstChild) element.removeChild(element.firstChild);
    if (!query) {
      element.appendChild(document.createTextNode(text));
      return;
    }
    var lower = text.toLowerCase();
    var from = 0;
    for (;;) {
      var at = lower.indexOf(query, from);
      if (at < 0) break;
      element.appendChild(document.createTextNode(text.slice(from, at)));
      var mark = document.createElement("mark");
      mark.textContent = text.slice(at, at + query.length);
      element.appendChild(mark);
      from = at + query.length;
    }
    element.appendChild(document.createTextNode(text.slice(from)));
  }

  function search() {
    var query = input.value.trim().toLowerCase();
    var matched = 0;
    parents.forEach(function (parent) {
      var own = !!query && parent.dataset.search.indexOf(query) >= 0;
      var hits = 0;
      all("li.child", parent).forEach(function (child) {
        var hit = !query || child.dataset.search.indexOf(query) >= 0;
        child.hidden = !(hit || own);
        if (query && hit) hits += 1;
        highlight(child.querySelector(".t"), query);
      });
      parent.hidden = !!query && !own && hits === 0;
      highlight(parent.querySelector(":scope > details > summary .t"), query);
      if (query && (hits > 0 || own)) parent.querySelector("details").open = true;
      matched += hits + (own ? 1 : 0);
    });
    counter.textContent = query ? matched + (matched === 1 ? " match" : " matches") : "";
    noMatch.hidden = !query || matched > 0;
  }

  if (input) {
    input.addEventListener("input", search);
    document.addEventListener("keydown", function (event) {
      if (event.key === "/" && document.activeElement !== input) {
        event.preventDefault();
        input.focus();
      } else if (event.key === "Escape" && document.activeElement === input) {
        input.value = "";
        search();
      }
    });
  }

  function setOpen(open) {
    all("ul.tree details.pnode").forEach(function (details) {
      details.open = open;
    });
  }
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand) expand.addEventListener("click", function () { setOpen(true); });
  if (collapse) collapse.addEventListener("click", function () { setOpen(false); });

  // ---- jump to a node from a table link ------------------------------------------------
  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (id.indexOf("node-") !== 0) return;
    var node = document.getElementById(id);
    if (!node) return;
    if (input && input.value) {
      input.value = "";
      search();
    }
    var parent = node.closest("li.parent");
    if (parent) parent.querySelector("details").open = true;
    node.scrollIntoView({ block: "center" });
    node.classList.add("flash");
    setTimeout(function () { node.classList.remove("flash"); }, 1200);
  }
  window.addEventListener("hashchange", reveal);

  // ---- sortable tables -----------------------------------------------------------------
  all("table.sortable").forEach(function (table) {
    all("thead th[data-sort]", table).forEach(function (th, column) {
      th.tabIndex = 0;
      var sort = function () {
        var numeric = th.dataset.sort === "num";
        var descending = th.getAttribute("aria-sort") !== "descending";
        all("thead th", table).forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var key = function (row) {
          var cell = row.cells[column];
          var value = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
          if (!numeric) return value.toLowerCase();
          return value === "" ? -Infinity : parseFloat(value);
        };
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var order = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sort();
        }
      });
    });
  });

  // ---- step texts: click to unfold -----------------------------------------------------
  all("td.steptext").forEach(function (cell) {
    cell.addEventListener("click", function () { cell.classList.toggle("open"); });
  });
})();
