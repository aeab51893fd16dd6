// New-job page: upload a dataset (showing the validator's line report), then create the job from the form.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var form = document.getElementById("job-form");
  var reportEl = document.getElementById("upload-report");

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function addFileOption(file) {
    ["training_file", "validation_file"].forEach(function (name) {
      var select = form.elements[name];
      var opt = el("option", file.filename + " · " + file.line_count + " lines · " + file.id.slice(-8));
      opt.value = file.id;
      select.insertBefore(opt, select.options[1] || null);
    });
    form.elements.training_file.value = file.id;
  }

  function showReport(ok, body) {
    reportEl.innerHTML = "";
    if (ok) {
      var p = el("p", "", "ok");
      p.textContent = "✓ " + body.filename + " is valid: " + body.line_count + " " + body.format.replace("_", "/") +
        " examples, " + body.bytes + " bytes, sha256 " + body.sha256.slice(0, 12) + "… → " + body.id;
      reportEl.appendChild(p);
      return;
    }
    var err = body.error || {};
    reportEl.appendChild(el("p", "✗ " + (err.message || "upload failed"), "error"));
    if (err.lines && err.lines.length) {
      var table = el("table", undefined, "report"), head = el("tr");
      head.appendChild(el("th", "Line")); head.appendChild(el("th", "Problem"));
      table.appendChild(head);
      err.lines.forEach(function (l) {
        var tr = el("tr");
        tr.appendChild(el("td", String(l.line), "mono")); tr.appendChild(el("td", l.reason));
        table.appendChild(tr);
      });
      reportEl.appendChild(table);
    }
  }

  document.getElementById("upload-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var data = new FormData(ev.target);
    data.append("purpose", "fine-tune");
    reportEl.textContent = "Uploading and validating…";
    fetch("/files", { method: "POST", body: data, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (b) { return [r.ok, b]; }); })
      .then(function (res) { showReport(res[0], res[1]); if (res[0]) addFileOption(res[1]); })
      .catch(function (e) { reportEl.textContent = "Upload failed: " + e; });
  });

  // Inputs are named by their JSON path ("lora.r"); blank ones are left out so the server's defaults apply.
  function body() {
    var out = { artifacts: [] };
    Array.prototype.forEach.call(form.elements, function (input) {
      if (!input.name || input.type === "submit") return;
      if (input.name === "artifacts") { if (input.checked) out.artifacts.push(input.value); return; }
      var v = input.value.trim();
      if (v === "") return;
      if (input.type === "number") v = Number(v);
      else if (v === "true" || v === "false") v = v === "true";
      else if (input.name === "lora.target_modules" && v !== "all-linear" && v !== "attention") {
        v = v.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      }
      var path = input.name.split("."), node = out;
      for (var i = 0; i < path.length - 1; i++) node = node[path[i]] = node[path[i]] || {};
      node[path[path.length - 1]] = v;
    });
    return out;
  }

  function clearErrors() {
    form.querySelectorAll(".field.bad").forEach(function (f) { f.classList.remove("bad"); });
    form.querySelectorAll(".msg").forEach(function (m) { m.textContent = ""; });
    document.getElementById("form-error").hidden = true;
  }

  // The API's 400 names the parameter(s) at fault; show each message under its input.
  function showErrors(err) {
    var details = err.details || [{ param: err.param, message: err.message }];
    var unplaced = [];
    details.forEach(function (d) {
      var field = d.param && form.querySelector('[data-param="' + d.param + '"]');
      if (!field && d.param) field = form.querySelector('[data-param="' + d.param.split(".").slice(0, 2).join(".") + '"]');
      if (field) { field.classList.add("bad"); field.querySelector(".msg").textContent = d.message; }
      else unplaced.push((d.param ? d.param + ": " : "") + d.message);
    });
    var box = document.getElementById("form-error");
    box.textContent = unplaced.length ? unplaced.join("; ") : "Please fix the highlighted fields.";
    box.hidden = false;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    clearErrors();
    var button = document.getElementById("create-button");
    button.disabled = true;
    fetch("/jobs", {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body()),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    })
      .then(function (r) { return r.json().then(function (b) { return [r.ok, b]; }); })
      .then(function (res) {
        if (res[0]) { window.location.href = res[1].url; return; }
        showErrors(res[1].error || { message: "request failed" });
        button.disabled = false;
      })
      .catch(function (e) { showErrors({ message: String(e) }); button.disabled = false; });
  });
})();
