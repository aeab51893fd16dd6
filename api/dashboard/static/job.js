// The job page's live part: charts and events from the SSE stream, or by polling when there is none.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("job-data").textContent);
  var base = "/jobs/" + encodeURIComponent(data.id);
  var charts = {
    loss: new LineChart(document.getElementById("chart-loss"), [
      { key: "train_loss", cls: "c1" }, { key: "valid_loss", cls: "c2" }]),
    grad: new LineChart(document.getElementById("chart-grad"), [{ key: "grad_norm", cls: "c3" }]),
    lr: new LineChart(document.getElementById("chart-lr"), [{ key: "learning_rate", cls: "c4" }]),
  };
  if (document.getElementById("chart-margin")) {  // DPO jobs: the implicit reward's margin and accuracy
    charts.margin = new LineChart(document.getElementById("chart-margin"), [
      { key: "rewards_margins", cls: "c1" }, { key: "valid_rewards_margins", cls: "c2" }]);
    charts.accuracy = new LineChart(document.getElementById("chart-accuracy"), [
      { key: "rewards_accuracies", cls: "c3" }, { key: "valid_rewards_accuracies", cls: "c4" }]);
  }
  var lastSeq = data.last_seq, finished = data.terminal, pollTimer = null;
  var modeEl = document.getElementById("live-mode");

  function eachChart(fn) { Object.keys(charts).forEach(function (k) { fn(charts[k]); }); }
  eachChart(function (c) { c.setData(data.metrics); });

  function addEvent(e) {
    var li = document.createElement("li");
    li.className = "lvl-" + e.level + " t-" + e.kind + " fresh";
    var t = document.createElement("time");
    t.textContent = new Date(e.created_at * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
    var m = document.createElement("span");
    m.textContent = e.message;
    li.appendChild(t); li.appendChild(document.createTextNode(" ")); li.appendChild(m);
    var list = document.getElementById("events");
    list.insertBefore(li, list.firstChild);
  }

  function setStatus(status) {
    var badge = document.querySelector("#status-badge .badge");
    if (badge && status) { badge.className = "badge s-" + status; badge.textContent = status.replace("_", " "); }
    // Paused or not decides which buttons apply (pause vs resume): reload once to show the right ones.
    if (status && (status === "paused") !== (data.status === "paused")) {
      data.status = status;
      setTimeout(function () { window.location.reload(); }, 300);
    }
  }

  function setProgress(job) {
    var p = job.progress, el = document.getElementById("progress");
    if (p.total_steps) {
      var eta = "";
      if (job.status === "running" && job.estimated_finish) {
        var s = Math.max(0, Math.round(job.estimated_finish - Date.now() / 1000));
        eta = " · ETA " + (s < 60 ? s + "s" : Math.floor(s / 60) + "m " + ("0" + (s % 60)).slice(-2) + "s");
      }
      el.innerHTML = '<div class="progress"><div class="bar"><div class="fill s-' + job.status +
        '" style="width:' + (p.percent || 0) + '%"></div></div><span class="ptext"></span></div>';
      el.querySelector(".ptext").textContent = p.step + "/" + p.total_steps + eta;
    }
    if (p.tokens_per_s) document.getElementById("tps").textContent = (+p.tokens_per_s.toPrecision(3)) + "";
  }

  // The job ended: show it, then reload once so artifacts, checkpoints and buttons are current.
  function finish(status) {
    if (finished) return;
    finished = true;
    setStatus(status);
    modeEl.textContent = "finished (" + status + ")";
    setTimeout(function () { window.location.reload(); }, 800);
  }

  function onEvent(e, seq) {
    if (seq <= lastSeq) return;
    lastSeq = seq;
    addEvent(e);
    if (e.kind === "metrics" && e.data) {
      eachChart(function (c) { c.upsert(e.data); });
      if (e.data.total_steps) setProgress({ status: "running", progress: {
        step: e.data.step, total_steps: e.data.total_steps, tokens_per_s: e.data.tokens_per_s,
        percent: Math.round(1000 * e.data.step / e.data.total_steps) / 10 } });
    }
    if (e.kind === "status" && e.data && e.data.status) setStatus(e.data.status);
  }

  function poll() {
    fetch(base + "/live.json?after_seq=" + lastSeq, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (body) {
        body.events.forEach(function (e) { onEvent(e, e.seq); });
        eachChart(function (c) { c.setData(body.metrics); });
        setStatus(body.job.status);
        setProgress(body.job);
        if (["succeeded", "failed", "cancelled"].indexOf(body.job.status) >= 0) finish(body.job.status);
      })
      .catch(function () { /* transient: the next tick retries */ })
      .then(function () { if (!finished) pollTimer = setTimeout(poll, 2000); });
  }

  function startPolling() {
    if (pollTimer || finished) return;
    modeEl.textContent = "polling every 2 s";
    modeEl.dataset.mode = "poll";
    poll();
  }

  function startStream() {
    if (!window.EventSource) return startPolling();
    var opened = false;
    var es = new EventSource(base + "/events/stream?after=" + lastSeq);
    es.onopen = function () { opened = true; modeEl.textContent = "streaming"; modeEl.dataset.mode = "stream"; };
    ["message", "metrics", "status", "checkpoint", "artifact"].forEach(function (type) {
      es.addEventListener(type, function (msg) {
        try { onEvent(JSON.parse(msg.data), parseInt(msg.lastEventId, 10) || lastSeq + 1); } catch (err) { /* skip */ }
      });
    });
    es.addEventListener("end", function (msg) {
      es.close();
      var status = "succeeded";
      try { status = JSON.parse(msg.data).status; } catch (err) { /* keep default */ }
      finish(status);
    });
    // A stream that never opened (404: no stream on this server) or was closed for good: poll instead.
    // A dropped open stream reconnects by itself, resuming from Last-Event-ID.
    es.onerror = function () {
      if (!opened || es.readyState === EventSource.CLOSED) { es.close(); startPolling(); }
    };
  }

  // `?live=poll` skips the stream: the fallback path, kept reachable for proxies that break SSE (and for tests).
  if (!finished) {
    if (new URLSearchParams(window.location.search).get("live") === "poll") startPolling();
    else startStream();
  }
})();
