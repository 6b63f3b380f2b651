// Small DOM helpers. Text goes in as text (textContent), never as HTML, so names and
// messages from the server cannot become markup.

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const NAME_RULE =
  "1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit";

// h("button", {class: "x", onclick: f}, "text", child...) -> element
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export function byId(id) {
  return document.getElementById(id);
}

// A JSON value as indented text, for answers shown to the operator.
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function number(value, digits = 3) {
  return typeof value === "number" ? Number(value.toPrecision(digits)).toString() : "—";
}

export function bytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

// Shows the outcome of one call in a page's answer area: what was asked, the status,
// and the server's body (an error's code, message, parameter and hint spelled out).
export function showOutcome(area, action, outcome) {
  const ok = outcome.ok;
  const parts = [h("p", { class: "outcome-title" }, `${action}: HTTP ${outcome.status}`)];
  if (!ok && outcome.error) {
    const e = outcome.error;
    parts.push(
      h("dl", { class: "error-fields" },
        h("dt", {}, "code"), h("dd", {}, e.code ?? "—"),
        h("dt", {}, "message"), h("dd", {}, e.message ?? "—"),
        e.param ? [h("dt", {}, "param"), h("dd", {}, e.param)] : null,
        e.hint ? [h("dt", {}, "hint"), h("dd", {}, e.hint)] : null,
      ),
    );
  }
  if (outcome.body !== undefined && outcome.body !== null) {
    parts.push(h("pre", { class: "json" }, typeof outcome.body === "string"
      ? outcome.body : pretty(outcome.body)));
  }
  area.className = `outcome ${ok ? "ok" : "failed"}`;
  replace(area, ...parts);
}

// Marks a form field invalid with a message next to it; returns false for chaining.
export function fieldError(input, message) {
  const note = byId(`${input.id}-error`);
  input.setAttribute("aria-invalid", "true");
  if (note) note.textContent = message;
  return false;
}

export function clearFieldErrors(form) {
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    const note = byId(`${input.id}-error`);
    if (note) note.textContent = "";
  }
}

// A labelled input with its error line: the label names it, aria-describedby ties the
// error line to it so a screen reader reads the reason.
export function field(id, label, attrs = {}, help = "") {
  const input = h(attrs.tag ?? "input", {
    id, name: id, "aria-describedby": `${id}-error${help ? ` ${id}-help` : ""}`,
    ...attrs, tag: undefined,
  });
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    input,
    help ? h("small", { id: `${id}-help`, class: "help" }, help) : null,
    h("small", { id: `${id}-error`, class: "field-error", "aria-live": "polite" }),
  );
}
