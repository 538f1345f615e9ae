"use strict";
// The API reference and a console to try it, from /openapi.json. Only this server is
// ever asked for anything: no CDN, no outside asset (the page's CSP forbids them).
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
const refName = (ref) => ref.split("/").pop();
let doc = null;
let token = "";

function resolve(schema) {
  while (schema && schema.$ref) schema = doc.components.schemas[refName(schema.$ref)];
  return schema || {};
}
function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.type === "array") return typeOf(schema.items) + "[]";
  if (schema.oneOf) return schema.oneOf.map(typeOf).filter(t => t !== "null").join(" | ");
  if (schema.enum) return schema.enum.filter(v => v !== null).map(v => JSON.stringify(v)).join(" | ");
  const t = Array.isArray(schema.type) ? schema.type.filter(x => x !== "null").join(" | ") : (schema.type || "object");
  return schema.format ? t + " (" + schema.format + ")" : t;
}
// An example value for a schema: its own example, else one built from its parts.
// `all` fills every property that has an example; otherwise only the required ones.
function example(schema, all) {
  schema = resolve(schema);
  if (schema.examples && schema.examples.length && schema.examples[0] !== null) return schema.examples[0];
  if (schema.example !== undefined && schema.example !== null) return schema.example;
  if (schema.oneOf) { const branch = schema.oneOf.find(s => s.type !== "null"); return branch ? example(branch, all) : null; }
  if (schema.enum) return schema.enum.find(v => v !== null);
  if (schema.properties) {
    const out = {}; const required = new Set(schema.required || []);
    for (const [name, prop] of Object.entries(schema.properties)) {
      if (!all && !required.has(name)) continue;
      const value = example(prop, all);
      if (value !== null && value !== undefined) out[name] = value;
    }
    return out;
  }
  return null;
}
function row(table, cells) { const tr = el("tr"); cells.forEach(c => tr.appendChild(el("td", null, c))); table.appendChild(tr); }
function header(table, names) { const tr = el("tr"); names.forEach(n => tr.appendChild(el("th", null, n))); table.appendChild(tr); }

function setToken(value) {
  token = value.trim();
  document.getElementById("token").value = token;
  document.getElementById("auth-status").textContent = token
    ? "Authorized: requests that need a token send this one."
    : "No token: requests that need one will be answered 401.";
}

async function show(out, response) {
  out.textContent = "";
  const status = el("div", response.ok ? "ok" : "bad", response.status + " " + response.statusText);
  out.appendChild(status);
  const heads = [];
  for (const name of ["content-type", "location", "retry-after", "www-authenticate"]) {
    const value = response.headers.get(name);
    if (value) heads.push(name + ": " + value);
  }
  if (heads.length) out.appendChild(el("div", "muted", heads.join("\n")));
  const text = await response.text();
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as sent */ }
  out.appendChild(el("pre", null, shown || "(no body)"));
}

// The "Try it" form of one operation: its parameters, its body, a Send button.
function tryIt(path, method, op) {
  const box = el("div", "try");
  box.hidden = true;
  const inputs = [];
  for (const p of op.parameters || []) {
    if (p.in === "header" && p.name.toLowerCase() === "authorization") continue;
    box.appendChild(el("label", null, p.name + " (" + p.in + (p.required ? ", required" : "") + ")"));
    const input = el("input");
    input.size = 40;
    const value = example(p.schema || {}, false);
    if (p.in === "path" && value !== null && value !== undefined) input.value = value;
    input.placeholder = typeOf(p.schema);
    box.appendChild(input);
    inputs.push([p, input]);
  }
  let body = null, form = null, mediaType = null;
  const content = (op.requestBody || {}).content || {};
  if (content["application/json"]) {
    mediaType = "application/json";
    const schema = content[mediaType].schema;
    box.appendChild(el("label", null, "body (application/json" + (op.requestBody.required === false ? ", may be empty" : "") + ")"));
    body = el("textarea");
    body.spellcheck = false;
    body.value = JSON.stringify(example(schema, false), null, 2);
    box.appendChild(body);
    const fill = el("button", null, "Fill in every example");
    fill.type = "button";
    fill.addEventListener("click", () => { body.value = JSON.stringify(example(schema, true), null, 2); });
    box.appendChild(fill);
  } else if (content["application/x-www-form-urlencoded"]) {
    mediaType = "application/x-www-form-urlencoded";
    form = [];
    for (const name of Object.keys(resolve(content[mediaType].schema).properties || {})) {
      box.appendChild(el("label", null, name));
      const input = el("input");
      if (name === "password") input.type = "password";
      box.appendChild(input);
      form.push([name, input]);
    }
  }
  const send = el("button", null, "Send");
  send.type = "button";
  box.appendChild(send);
  const out = el("div");
  box.appendChild(out);
  send.addEventListener("click", async () => {
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const [p, input] of inputs) {
      const value = input.value;
      if (p.in === "path") url = url.replace("{" + p.name + "}", encodeURIComponent(value));
      else if (value === "") continue;
      else if (p.in === "query") query.append(p.name, value);
      else if (p.in === "header") headers[p.name] = value;
    }
    if (query.toString()) url += "?" + query.toString();
    if (op.security && token) headers["Authorization"] = "Bearer " + token;
    const init = { method: method.toUpperCase(), headers };
    if (body && body.value.trim() !== "") { headers["Content-Type"] = mediaType; init.body = body.value; }
    if (form) {
      headers["Content-Type"] = mediaType;
      init.body = new URLSearchParams(form.filter(([, i]) => i.value !== "").map(([n, i]) => [n, i.value])).toString();
    }
    out.textContent = "Sending…";
    try {
      const response = await fetch(url, init);
      await show(out, response);
    } catch (e) {
      out.textContent = "The request failed: " + e;
    }
  });
  return box;
}

function render() {
  document.getElementById("title").textContent = doc.info.title + " " + (doc.info.version || "");
  document.getElementById("description").textContent = doc.info.description || "";
  const paths = document.getElementById("paths");
  paths.textContent = "";
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const box = el("div", "op");
      const title = el("div");
      title.appendChild(el("span", "method " + method, method.toUpperCase()));
      title.appendChild(el("span", "path", path));
      box.appendChild(title);
      if (op.summary || op.description) box.appendChild(el("p", null, op.summary || op.description));
      if (op.security) box.appendChild(el("p", "muted", "Needs a bearer token (Authorize above)."));
      if (op.parameters && op.parameters.length) {
        const t = el("table"); header(t, ["parameter", "in", "type", "about"]);
        op.parameters.forEach(p => row(t, [p.name + (p.required ? " *" : ""), p.in, typeOf(p.schema), p.description || ""]));
        box.appendChild(t);
      }
      if (op.requestBody) {
        const content = op.requestBody.content || {};
        for (const [type, media] of Object.entries(content)) box.appendChild(el("p", null, "Body (" + type + "): " + typeOf(media.schema)));
      }
      const t = el("table"); header(t, ["answer", "body", "about"]);
      for (const [code, resp] of Object.entries(op.responses || {})) {
        const media = resp.content && Object.values(resp.content)[0];
        row(t, [code, media ? typeOf(media.schema) : "", resp.description || ""]);
      }
      box.appendChild(t);
      const console_ = tryIt(path, method, op);
      const toggle = el("button", null, "Try it");
      toggle.type = "button";
      toggle.addEventListener("click", () => { console_.hidden = !console_.hidden; toggle.textContent = console_.hidden ? "Try it" : "Hide"; });
      box.appendChild(toggle);
      box.appendChild(console_);
      paths.appendChild(box);
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    schemas.appendChild(el("h3", null, name));
    if (schema.description) schemas.appendChild(el("p", null, schema.description));
    const t = el("table"); header(t, ["field", "type", "about"]);
    const required = new Set(schema.required || []);
    for (const [field, prop] of Object.entries(schema.properties || {})) row(t, [field + (required.has(field) ? " *" : ""), typeOf(prop), prop.description || ""]);
    schemas.appendChild(t);
  }
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("auth-status");
  const form = new URLSearchParams({
    username: document.getElementById("username").value,
    password: document.getElementById("password").value,
  });
  try {
    const response = await fetch("/api/v2/token", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: form.toString() });
    const answer = await response.json().catch(() => ({}));
    if (response.ok && answer.access_token) {
      setToken(answer.access_token);
      document.getElementById("password").value = "";
    } else {
      status.textContent = "No token: " + response.status + " " + (answer.detail || response.statusText);
    }
  } catch (e) {
    status.textContent = "The token request failed: " + e;
  }
});
document.getElementById("token").addEventListener("change", (event) => setToken(event.target.value));
document.getElementById("forget").addEventListener("click", () => setToken(""));

fetch("/openapi.json").then(r => r.json()).then(d => { doc = d; render(); })
  .catch(e => { document.getElementById("paths").textContent = "Could not load /openapi.json: " + e; });
