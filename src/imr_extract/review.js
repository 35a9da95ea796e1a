(function () {
  "use strict";
  // The review page's behaviour. Everything shown from the data is set as textContent.
  var body = document.body;
  var errs = document.getElementById("js-errors");
  function report(msg) {
    var li = document.createElement("li");
    li.textContent = String(msg);
    errs.appendChild(li);
    errs.hidden = false;
    body.setAttribute("data-error", "1");
  }
  (window.__reviewErrors || []).forEach(report);
  window.addEventListener("error", function (e) {
    report(e.message + " (line " + e.lineno + ")");
  });
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function replay(e, cls) {
    e.classList.remove(cls);
    void e.offsetWidth; // restart the animation
    e.classList.add(cls);
  }

  try {
    var data = JSON.parse(document.getElementById("review-data").textContent);
    var views = document.querySelectorAll("pre.letter");
    var tabs = document.querySelectorAll(".tabs button");
    var detail = document.getElementById("detail");
    var current = 0;
    var selected = [];

    function show(i) {
      current = i;
      views.forEach(function (v) { v.hidden = Number(v.getAttribute("data-view")) !== i; });
      tabs.forEach(function (t) {
        t.setAttribute("aria-selected", String(Number(t.getAttribute("data-view")) === i));
      });
      body.setAttribute("data-view", String(i));
    }
    function pieces(k) {
      if (!/^r\d+[sa]\d+$/.test(k || "")) return [];
      return Array.prototype.slice.call(document.querySelectorAll('mark[data-k="' + k + '"]'));
    }
    function chainFrom(mark) {
      // The highlight under the pointer and every highlight around it, innermost first.
      var chain = [];
      while (mark && mark.tagName === "MARK" && mark.hasAttribute("data-k")) {
        chain.push(mark.getAttribute("data-k"));
        mark = mark.parentElement && mark.parentElement.closest("mark");
      }
      return chain;
    }
    function showRow(id) {
      var row = id && document.getElementById(id);
      if (!row) return;
      row.scrollIntoView({ block: "center", behavior: "smooth" });
      replay(row, "flash");
    }
    function describe(k) {
      var s = data.spans[k];
      var p = s.provenance || {};
      var group = (pieces(k)[0].className.match(/\bg-(\w+)/) || [0, "other"])[1];
      var item = el("div", "it g-" + group);
      var head = el("div");
      var code = el("code", "plink", s.path);
      code.title = "show in the table";
      code.addEventListener("click", function () { showRow(s.row); });
      head.appendChild(code);
      head.appendChild(
        document.createTextNode(" [" + s.label + (s.alt ? ", other extractor" : "") + "]")
      );
      item.appendChild(head);
      var v = s.value;
      item.appendChild(el("div", "v", typeof v === "string" ? v : JSON.stringify(v)));
      var status = s.assessed || s.alt ? p.status : "unverified (record not verified)";
      var bits = [
        p.method,
        p.rule ? "rule " + p.rule : "",
        p.match ? "match " + p.match : "",
        p.score != null ? "score " + p.score : "",
        "status " + status,
        "page " + s.page,
        "chars " + s.start + "\u2013" + s.end,
      ];
      if (p.failed_checks && p.failed_checks.length) {
        bits.push("fails " + p.failed_checks.join(", "));
      }
      item.appendChild(el("div", "detail", bits.filter(Boolean).join(" \u00b7 ")));
      return item;
    }
    function select(chain) {
      selected.forEach(function (e) { e.classList.remove("sel"); });
      selected = [];
      detail.textContent = "";
      chain = chain.filter(function (k) { return data.spans[k] && pieces(k).length; });
      if (!chain.length) {
        detail.hidden = true;
        return;
      }
      var close = el("button", "close", "\u00d7");
      close.type = "button";
      close.title = "close";
      close.addEventListener("click", function () { select([]); });
      detail.appendChild(close);
      detail.appendChild(el("b", "", "At this point of the letter"));
      chain.forEach(function (k) {
        pieces(k).forEach(function (e) { e.classList.add("sel"); selected.push(e); });
        detail.appendChild(describe(k));
      });
      detail.hidden = false;
      body.setAttribute("data-selected", chain[0]);
    }
    function goTo(k, instant) {
      var s = data.spans[k];
      var list = pieces(k);
      if (!s || !list.length) return false;
      if (s.view !== current) show(s.view);
      list[0].scrollIntoView({ block: "center", behavior: instant ? "auto" : "smooth" });
      list.forEach(function (e) { replay(e, "flash"); });
      select(chainFrom(list[0]));
      return true;
    }
    function firstKey(path, view) {
      var keys = Object.keys(data.spans).filter(function (k) {
        var s = data.spans[k];
        return s.path === path && !s.alt && (view === undefined || s.view === view);
      });
      return keys[0];
    }

    tabs.forEach(function (t) {
      t.addEventListener("click", function () { show(Number(t.getAttribute("data-view"))); });
    });
    document.querySelectorAll("tr.row").forEach(function (row) {
      row.addEventListener("click", function (ev) {
        var cell = ev.target.closest("[data-target]");
        if (cell && goTo(cell.getAttribute("data-target"))) return;
        var path = row.getAttribute("data-path");
        goTo(firstKey(path, current) || firstKey(path));
      });
    });
    document.querySelectorAll(".issue, .plink").forEach(function (e) {
      e.addEventListener("click", function () {
        if (goTo(e.getAttribute("data-target"))) return;
        var path = e.getAttribute("data-path") || e.textContent;
        var row = document.querySelector('tr.row[data-path="' + CSS.escape(path) + '"]');
        if (row) showRow(row.id);
      });
    });
    views.forEach(function (v) {
      v.addEventListener("click", function (ev) { select(chainFrom(ev.target.closest("mark"))); });
    });
    document.querySelectorAll(".lg input").forEach(function (box) {
      box.addEventListener("change", function () {
        body.classList.toggle("hide-" + box.getAttribute("data-group"), !box.checked);
      });
    });

    // Self-check: every highlight holds exactly its span's text, as the browser parsed the page.
    var bad = [];
    var count = 0;
    Object.keys(data.spans).forEach(function (k) {
      var list = pieces(k);
      var text = list.map(function (e) { return e.textContent; }).join("");
      if (list.length) count++;
      if (!list.length || text !== data.spans[k].text) {
        bad.push(data.spans[k].label + " " + data.spans[k].path);
      }
    });
    body.setAttribute("data-marks", String(count));
    body.setAttribute("data-span-check", bad.length ? "failed" : "ok");
    if (bad.length) report("highlights not holding their span's text: " + bad.slice(0, 8).join("; "));

    // A link to one field: review.html#field=items[0].request&record=llm
    function follow(ev) {
      var params = new URLSearchParams(location.hash.slice(1));
      var path = params.get("field");
      if (!path) return;
      var view = data.labels.indexOf(params.get("record"));
      var k = view >= 0 ? firstKey(path, view) : firstKey(path, current) || firstKey(path);
      if (!goTo(k, !ev)) {
        var row = document.querySelector('tr.row[data-path="' + CSS.escape(path) + '"]');
        if (row) showRow(row.id);
      }
    }
    window.addEventListener("hashchange", follow);
    show(0);
    follow();
    body.setAttribute("data-ready", "1");
  } catch (e) {
    report(e && e.stack ? e.stack : e);
  }
})();
