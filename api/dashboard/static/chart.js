// A small SVG line chart for metric series: no library, no network. One chart per element.
// Usage: const c = new LineChart(el, [{key: "train_loss", cls: "c1"}]); c.setData(points);
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 400, H = 210, PAD = { l: 50, r: 14, t: 10, b: 34 };

  function svg(tag, attrs, parent) {
    var el = document.createElementNS(NS, tag);
    for (var k in attrs) el.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(el);
    return el;
  }

  // "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
  function ticks(lo, hi, count) {
    if (hi === lo) { hi = lo + 1; }
    var raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return s >= raw; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function label(v) {
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
    return +v.toPrecision(3) + "";
  }

  function LineChart(el, series) {
    this.el = el;
    this.series = series;
    this.points = [];
    this.svg = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img" }, el);
    this.svg.setAttribute("aria-label", el.id);
    this.render();
  }

  LineChart.prototype.setData = function (points) {
    this.points = points.slice().sort(function (a, b) { return a.step - b.step; });
    this.render();
  };

  // Add or replace points by step (a stream may resend a step after a resume).
  LineChart.prototype.upsert = function (point) {
    var i = this.points.findIndex(function (p) { return p.step === point.step; });
    if (i >= 0) this.points[i] = Object.assign({}, this.points[i], point);
    else this.points.push(point);
    this.setData(this.points);
  };

  LineChart.prototype.render = function () {
    var s = this.svg, series = this.series, pts = this.points;
    while (s.firstChild) s.removeChild(s.firstChild);
    var xs = [], ys = [];
    series.forEach(function (ser) {
      pts.forEach(function (p) {
        var v = p[ser.key];
        if (v !== null && v !== undefined && isFinite(v)) { xs.push(p.step); ys.push(v); }
      });
    });
    this.el.dataset.points = ys.length;
    if (!ys.length) {
      svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, s).textContent = "no data yet";
      return;
    }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    var pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.1 || 1;
    y0 -= pad; y1 += pad;
    if (y0 < 0 && Math.min.apply(null, ys) >= 0) y0 = 0;
    var iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
    function X(v) { return PAD.l + (v - x0) / (x1 - x0) * iw; }
    function Y(v) { return PAD.t + (1 - (v - y0) / (y1 - y0)) * ih; }

    var grid = svg("g", { class: "grid" }, s);
    ticks(y0, y1, 4).forEach(function (t) {
      if (t < y0 || t > y1) return;
      svg("line", { x1: PAD.l, x2: W - PAD.r, y1: Y(t), y2: Y(t) }, grid);
      svg("text", { x: PAD.l - 6, y: Y(t) + 4, "text-anchor": "end" }, grid).textContent = label(t);
    });
    ticks(x0, x1, 6).forEach(function (t) {
      if (t < x0 || t > x1 || t % 1) return;
      svg("text", { x: X(t), y: H - 10, "text-anchor": "middle" }, grid).textContent = t;
    });
    // The x-axis name sits in the empty bottom-left corner, clear of the tick labels.
    svg("text", { x: 2, y: H - 10, "text-anchor": "start", class: "axis" }, grid).textContent = "step";

    series.forEach(function (ser) {
      var own = pts.filter(function (p) { var v = p[ser.key]; return v !== null && v !== undefined && isFinite(v); });
      if (!own.length) return;
      var d = own.map(function (p, i) { return (i ? "L" : "M") + X(p.step).toFixed(1) + " " + Y(p[ser.key]).toFixed(1); });
      svg("path", { d: d.join(" "), class: "line " + ser.cls }, s);
      // Dots while they are few enough to read; each carries its value as a tooltip.
      if (own.length <= 120) {
        own.forEach(function (p) {
          var c = svg("circle", { cx: X(p.step), cy: Y(p[ser.key]), r: own.length > 40 ? 1.6 : 2.6, class: "pt " + ser.cls }, s);
          svg("title", {}, c).textContent = ser.key + " @ step " + p.step + ": " + label(p[ser.key]);
        });
      }
    });
  };

  window.LineChart = LineChart;
})();
