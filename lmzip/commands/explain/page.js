(function () {
  "use strict";
  var root = document.documentElement;
  try {
    var D = JSON.parse(document.getElementById("lmz-data").textContent);
    var text = document.getElementById("text");
    var tip = document.getElementById("tip");
    var spans = text.children, n = spans.length, k = D.k, scale = Math.pow(2, D.prec);
    if (n !== D.T.length) throw new Error("token spans " + n + " != tokens " + D.T.length);
    for (var i = 0; i < n; i++) spans[i].lmzIndex = i;
    var pinned = -1;

    function label(i) { return (D.X && D.X[i] !== undefined) ? D.X[i] : D.V[D.T[i]]; }
    function pct(p) {
      if (p >= 0.9995) return ">99.9%";
      if (p >= 0.995) return (100 * p).toFixed(1) + "%";
      if (p >= 0.0995) return (100 * p).toFixed(0) + "%";
      if (p >= 0.000995) return (100 * p).toFixed(1) + "%";
      return (100 * p).toPrecision(2) + "%";
    }
    function el(tag, cls, txt) {
      var e = document.createElement(tag);
      if (cls) e.className = cls;
      if (txt !== undefined) e.textContent = txt;
      return e;
    }
    function fill(i) {
      tip.textContent = "";
      var a = D.A[i], bits = D.prec - Math.log2(a);
      tip.appendChild(el("div", "tk", label(i)));
      var m = el("div", "meta");
      m.appendChild(el("b", "", bits.toFixed(2) + " bits"));
      m.appendChild(document.createTextNode("  ·  p = " + pct(a / scale) + "  ·  guess #" + D.R[i]));
      m.appendChild(el("br"));
      m.appendChild(document.createTextNode("without adaptation: " + D.P[i].toFixed(2) + " bits" +
        (D.H[i] >= 0 ? "  ·  helped most: " + D.C[D.H[i]] : "")));
      m.appendChild(el("br"));
      m.appendChild(document.createTextNode("token " + (i + 1) + " of " + n + "  ·  id " + D.T[i] +
        "  ·  bytes " + D.O[i] + "–" + D.O[i + 1]));
      tip.appendChild(m);
      if (k) {
        tip.appendChild(el("div", "hd", "model's top guesses"));
        var g = el("div", "g");
        for (var j = 0; j < k; j++) {
          var id = D.G[i * k + j], p = D.F[i * k + j] / scale;
          var hit = id === D.T[i] && !(D.X && D.X[i] !== undefined);
          g.appendChild(el("span", hit ? "l hit" : "l", (hit ? "✓ " : "") + D.V[id]));
          g.appendChild(el("span", "p", pct(p)));
          var bar = el("span", "b"), fillbar = el("i");
          fillbar.style.width = Math.max(1, Math.round(100 * p)) + "%";
          bar.appendChild(fillbar);
          g.appendChild(bar);
        }
        tip.appendChild(g);
      }
    }
    function place(s) {
      var r = s.getBoundingClientRect();
      tip.hidden = false;
      var w = tip.offsetWidth, h = tip.offsetHeight;
      var x = Math.min(window.innerWidth - w - 8, Math.max(8, r.left));
      var y = r.bottom + 6;
      if (y + h > window.innerHeight - 4 && r.top - h - 6 > 0) y = r.top - h - 6;
      tip.style.left = (x + window.scrollX) + "px";
      tip.style.top = (y + window.scrollY) + "px";
    }
    function show(i) { fill(i); place(spans[i]); }
    function hide() { if (pinned < 0) tip.hidden = true; }
    function pin(i, scroll) {
      if (pinned >= 0) spans[pinned].classList.remove("pin");
      pinned = i;
      if (i < 0) { tip.hidden = true; return; }
      spans[i].classList.add("pin");
      var r = spans[i].getBoundingClientRect();
      if (scroll && (r.top < 0 || r.bottom > window.innerHeight)) spans[i].scrollIntoView({block: "center"});
      show(i);
    }
    function tokenOf(t) {
      while (t && t !== text) {
        if (t.parentNode === text) return t.lmzIndex;
        t = t.parentNode;
      }
      return -1;
    }
    text.addEventListener("mouseover", function (e) {
      var i = tokenOf(e.target);
      if (i >= 0 && pinned < 0) show(i);
    });
    text.addEventListener("mouseleave", hide);
    text.addEventListener("click", function (e) {
      var i = tokenOf(e.target);
      pin(i === pinned ? -1 : i, false);
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") pin(-1);
      else if (pinned >= 0 && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
        pin(Math.min(n - 1, Math.max(0, pinned + (e.key === "ArrowRight" ? 1 : -1))), true);
        e.preventDefault();
      }
    });
    var rows = document.querySelectorAll("tr[data-i]");
    for (var r = 0; r < rows.length; r++) {
      rows[r].addEventListener("click", function () { pin(parseInt(this.getAttribute("data-i"), 10), true); });
    }
    var mh = /^#t(\d+)$/.exec(location.hash);
    if (mh && +mh[1] < n) pin(+mh[1], true);
    root.setAttribute("data-lmz-ready", String(n));
  } catch (err) {
    root.setAttribute("data-lmz-error", String(err && err.message || err));
    throw err;
  }
})();
