// The Bramble administration console's one script: forms and buttons marked with data-api
// call the administration API (same origin, the session cookie) with JSON (or, for a form
// with data-file, the chosen file as it is), then reload the page or go where data-then says;
// an error is shown in the API's own words. No build step.
"use strict";

function show(text, kind) {
  const m = document.getElementById("message");
  if (!m) return;
  m.textContent = text;
  m.className = kind;
  m.scrollIntoView({ block: "nearest" });
}

function formJson(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === "checkbox") {
      if (el.dataset.list !== undefined) {
        if (!out[el.name]) out[el.name] = [];
        if (el.checked) out[el.name].push(el.value);
      } else {
        out[el.name] = el.checked;
      }
      continue;
    }
    if (el.value === "") continue;
    // unchanged fields (data-initial) are left out, so only what the administrator changed is sent
    if (el.dataset.initial !== undefined && el.value === el.dataset.initial) continue;
    if (el.dataset.type === "number") out[el.name] = Number(el.value);
    else if (el.dataset.array !== undefined) out[el.name] = [el.value];
    else if (el.dataset.map !== undefined) {
      out[el.dataset.map] = out[el.dataset.map] || {};
      out[el.dataset.map][el.name] = el.value;
    } else out[el.name] = el.value;
  }
  return out;
}

// "Done: {field}" with the fields of the API's answer; `otherwise` when one is missing
function fill(template, otherwise, answer) {
  if (!template) return template;
  let missing = false;
  const text = template.replace(/\{(\w+)\}/g, (_, k) => {
    const v = answer && answer[k];
    if (v === undefined || v === null) { missing = true; return ""; }
    return String(v);
  });
  return missing && otherwise !== undefined ? fill(otherwise, undefined, answer) : text;
}

async function call(spec, body, then, done, doneElse) {
  const [method, ...rest] = spec.split(" ");
  const path = rest.join(" ");
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body instanceof Blob) {
    opts.headers["Content-Type"] = "application/octet-stream";
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    show("The server did not answer: " + e.message, "error");
    return;
  }
  if (resp.status === 401 && path !== "/api/v1/login") {
    location.href = "/console/login";
    return;
  }
  if (!resp.ok) {
    let text = resp.status + " " + resp.statusText;
    try {
      const j = await resp.json();
      if (j && j.error && j.error.message) text = j.error.message;
    } catch (_) {}
    show(text, "error");
    return;
  }
  let answer = null;
  try {
    answer = await resp.json();
  } catch (_) {}
  done = fill(done, doneElse, answer);
  if (done) sessionStorage.setItem("bramble-done", done);
  if (then) location.href = then;
  else location.reload();
}

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (!form.dataset.api) return;
  ev.preventDefault();
  if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
  const body = formJson(form);
  let spec = form.dataset.api;
  // {field} in the path takes the field's value (and leaves the body)
  spec = spec.replace(/\{(\w+)\}/g, (_, k) => {
    const v = body[k];
    delete body[k];
    return encodeURIComponent(v === undefined ? "" : v);
  });
  // data-file names a file input: its file is the request's body (the other fields go in the path)
  let payload = form.dataset.nobody !== undefined ? undefined : body;
  if (form.dataset.file) {
    const input = form.elements[form.dataset.file];
    payload = input && input.files && input.files[0];
    if (!payload) {
      show("Choose the file to upload first.", "error");
      return;
    }
  }
  let then = form.dataset.then;
  if (then) then = then.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(form.elements[k] ? form.elements[k].value : ""));
  call(spec, payload, then, form.dataset.done, form.dataset.doneElse);
});

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-api]");
  if (!b) return;
  if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
  const body = b.dataset.body ? JSON.parse(b.dataset.body) : undefined;
  call(b.dataset.api, body, b.dataset.then, b.dataset.done, b.dataset.doneElse);
});

document.addEventListener("DOMContentLoaded", () => {
  const done = sessionStorage.getItem("bramble-done");
  if (done) {
    sessionStorage.removeItem("bramble-done");
    show(done, "done");
  }
});
