// Playground: one chat completion on a chosen adapter with a named or pasted JSON Schema,
// sent through the admin playground route; shows the answer, the gateway's headers
// (adapter, version, attempts), the time taken, or the typed error.

import { call } from "./api.js";
import { clearFieldErrors, field, fieldError, h, pretty, replace, showOutcome } from "./dom.js";

const JSON_TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"];
const COMBINATORS = ["anyOf", "oneOf", "allOf", "enum", "const", "$ref"];
const HEADERS = [["Adapter", "x-gateway-adapter"], ["Version", "x-gateway-adapter-version"],
  ["Attempts", "x-gateway-attempts"], ["Schema", "x-gateway-schema"]];
const INLINE_NAME = "playground";

// Why `text` is not a JSON Schema the gateway could take, or null when it looks like one.
export function schemaProblem(text) {
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (exc) {
    return `Not valid JSON: ${exc.message}`;
  }
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    return "A JSON Schema must be a JSON object, such as {\"type\": \"object\", ...}.";
  }
  if ("type" in schema) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const bad = types.find((t) => !JSON_TYPES.includes(t));
    return bad === undefined ? null
      : `"type" must be one of ${JSON_TYPES.join(", ")}; got ${JSON.stringify(bad)}.`;
  }
  return COMBINATORS.some((key) => key in schema) ? null
    : `The schema needs a "type" (or one of ${COMBINATORS.join(", ")}).`;
}

export class PlaygroundPage {
  constructor(section) {
    this.section = section;
    this.result = h("div", { id: "playground-result", class: "outcome", role: "status",
      tabindex: "-1" });
    this.form = this.buildForm();
    replace(section, h("div", { class: "page-head" },
      h("h2", { id: "h-playground" }, "Playground")),
    h("p", { class: "help" }, "Runs as the operator (tenant label \"console\"): every adapter, " +
      "no tenant limits."),
    this.form, this.result);
  }

  async show() {
    const res = await call("GET", "/admin/adapters");
    if (!res.ok) {
      showOutcome(this.result, "List adapters", res);
      return;
    }
    const keep = (select) => select.value;
    const adapter = this.form.querySelector("#pg-adapter");
    const schema = this.form.querySelector("#pg-schema-name");
    const [adapterWas, schemaWas] = [keep(adapter), keep(schema)];
    replace(adapter, [res.body.base_model, ...res.body.adapters.map((a) => a.name)]
      .map((name) => h("option", { value: name }, name)));
    replace(schema, res.body.schemas.map((name) => h("option", { value: name }, name)));
    if (adapterWas) adapter.value = adapterWas;
    if (schemaWas) schema.value = schemaWas;
  }

  hide() {}

  buildForm() {
    const radio = (value, label, checked = false) => h("label", { class: "choice" },
      h("input", { type: "radio", name: "pg-output", value, checked }), label);
    const form = h("form", { class: "card stack", novalidate: true,
      "aria-labelledby": "h-playground" },
      h("div", { class: "grid" },
        field("pg-adapter", "Adapter", { tag: "select" }),
        field("pg-max-tokens", "Max tokens", { inputmode: "numeric", value: "200" }),
      ),
      h("fieldset", {},
        h("legend", {}, "Output"),
        radio("named", "A named schema", true),
        radio("inline", "A JSON Schema pasted here"),
        radio("text", "Free text (no schema)"),
      ),
      field("pg-schema-name", "Named schema", { tag: "select" }),
      field("pg-schema", "JSON Schema", { tag: "textarea", rows: "6", spellcheck: "false",
        placeholder: '{"type": "object", "properties": {"answer": {"type": "string"}}}' }),
      field("pg-system", "System message (optional)", { tag: "textarea", rows: "2" }),
      field("pg-user", "User message", { tag: "textarea", rows: "3", required: true }),
      h("button", { type: "submit" }, "Send"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    form.addEventListener("change", () => this.syncOutput());
    this.syncOutput(form);
    return form;
  }

  // Shows only the schema field the chosen output needs.
  syncOutput(form = this.form) {
    const output = form.querySelector("input[name=pg-output]:checked").value;
    form.querySelector("#pg-schema-name").closest(".field").hidden = output !== "named";
    form.querySelector("#pg-schema").closest(".field").hidden = output !== "inline";
  }

  // The request body, or null after marking what is wrong.
  readForm() {
    const form = this.form;
    const get = (id) => form.querySelector(`#${id}`);
    clearFieldErrors(form);
    let ok = true;
    const user = get("pg-user").value;
    if (!user.trim()) ok = fieldError(get("pg-user"), "Type the user's message.");
    const maxTokens = Number(get("pg-max-tokens").value);
    if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) {
      ok = fieldError(get("pg-max-tokens"), "A whole number of at least 1.");
    }
    const system = get("pg-system").value;
    const body = {
      model: get("pg-adapter").value,
      messages: [...(system.trim() ? [{ role: "system", content: system }] : []),
        { role: "user", content: user }],
      max_tokens: maxTokens,
    };
    const output = form.querySelector("input[name=pg-output]:checked").value;
    if (output === "named") {
      const name = get("pg-schema-name").value;
      if (!name) ok = fieldError(get("pg-schema-name"), "This gateway has no named schema.");
      body.response_format = { type: "json_schema", json_schema: { name } };
    } else if (output === "inline") {
      const problem = schemaProblem(get("pg-schema").value);
      if (problem) ok = fieldError(get("pg-schema"), problem);
      else {
        body.response_format = { type: "json_schema",
          json_schema: { name: INLINE_NAME, schema: JSON.parse(get("pg-schema").value) } };
      }
    }
    return ok ? body : null;
  }

  async send() {
    const body = this.readForm();
    if (!body) {
      this.form.querySelector("[aria-invalid]")?.focus();
      return;
    }
    replace(this.result, h("p", {}, "Waiting for the answer…"));
    this.result.className = "outcome";
    const res = await call("POST", "/admin/playground/chat/completions", { json: body });
    if (res.status === 401 || res.status === 403) return;
    if (!res.ok) showOutcome(this.result, `Sent, answered in ${Math.round(res.ms)} ms`, res);
    else this.showAnswer(res);
    this.result.focus();
  }

  showAnswer(res) {
    const choice = res.body.choices[0];
    const content = choice.message.content ?? "";
    let answer;
    try {
      answer = h("pre", { class: "json", id: "playground-answer", "data-valid-json": "true" },
        pretty(JSON.parse(content)));
    } catch {
      answer = h("pre", { class: "json", id: "playground-answer", "data-valid-json": "false" },
        content);
    }
    const usage = res.body.usage;
    this.result.className = "outcome ok";
    replace(this.result,
      h("p", { class: "outcome-title" }, `HTTP ${res.status} in ${Math.round(res.ms)} ms`),
      h("dl", { class: "error-fields" }, HEADERS.map(([label, name]) => [
        h("dt", {}, label), h("dd", { "data-header": name }, res.headers.get(name) ?? "—")]),
      h("dt", {}, "Finish reason"), h("dd", {}, choice.finish_reason),
      h("dt", {}, "Tokens"), h("dd", {}, `${usage.prompt_tokens} in, ${usage.completion_tokens} out`),
      ),
      h("p", {}, answer.dataset.validJson === "true" ? "The answer is valid JSON:"
        : "The answer is not JSON:"),
      answer,
    );
  }
}
