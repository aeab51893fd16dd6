// "Try it" on a succeeded job's page: streams the fine-tune's answer beside the base model's (OpenAI SSE chunks).
(function () {
  "use strict";
  var form = document.getElementById("try-form");
  if (!form) return;
  var data = JSON.parse(document.getElementById("try-data").textContent);

  function value(id) { return document.getElementById(id).value; }

  function body(model) {
    var b = {
      model: model,
      messages: [{ role: "user", content: value("try-prompt") }],
      temperature: Number(value("try-temperature")),
      top_p: Number(value("try-top-p")),
      max_tokens: Number(value("try-max-tokens")),
      stream: true
    };
    if (value("try-seed") !== "") b.seed = Number(value("try-seed"));
    return b;
  }

  // Reads `data: {...}` lines as they arrive and appends each chunk's delta to `out`.
  function stream(model, out) {
    out.textContent = "";
    out.classList.remove("try-error");
    return fetch("/try/chat/completions", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": data.csrf },
      body: JSON.stringify(body(model))
    }).then(function (r) {
      if (!r.ok) {
        return r.json().then(function (e) { throw new Error((e.error && e.error.message) || r.statusText); });
      }
      var reader = r.body.getReader(), decoder = new TextDecoder(), buffer = "";
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) return;
          buffer += decoder.decode(step.value, { stream: true });
          var events = buffer.split("\n\n");
          buffer = events.pop();
          events.forEach(function (event) {
            var line = event.trim();
            if (line.indexOf("data: ") !== 0 || line === "data: [DONE]") return;
            var chunk = JSON.parse(line.slice(6));
            if (chunk.error) throw new Error(chunk.error.message);
            (chunk.choices || []).forEach(function (c) { if (c.delta && c.delta.content) out.textContent += c.delta.content; });
          });
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      out.classList.add("try-error");
      out.textContent = err.message;
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var send = document.getElementById("try-send"), baseToo = document.getElementById("try-base-too").checked;
    document.getElementById("try-base-pane").hidden = !baseToo;
    send.disabled = true;
    var runs = [stream(value("try-model"), document.getElementById("try-tuned"))];
    if (baseToo) runs.push(stream(data.base, document.getElementById("try-base")));
    Promise.all(runs).then(function () { send.disabled = false; });
  });
})();
