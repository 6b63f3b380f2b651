// Tenants: list; create or edit limits and allowed adapters; issue a key (shown once);
// delete (confirmed).

import { call } from "./api.js";
import { NAME_RE, NAME_RULE, clearFieldErrors, field, fieldError, h, replace, showOutcome }
  from "./dom.js";
import { confirmAction, showKeyOnce } from "./dialogs.js";

// Form field id -> [settings key, label, kind, help]. Kinds: "int" (>= 1), "rate" (> 0).
const LIMITS = [
  ["tenant-max-tokens", "max_tokens", "Max tokens per request", "int"],
  ["tenant-rpm", "requests_per_minute", "Requests per minute", "rate"],
  ["tenant-tpm", "tokens_per_minute", "Tokens per minute", "rate"],
  ["tenant-concurrency", "max_concurrency", "Max concurrent requests", "int"],
  ["tenant-compile", "schema_compile_budget_per_minute", "New schemas per minute", "int"],
];
const COLUMNS = ["Tenant", "Allowed adapters", "Defaults", "Limits", "Keys", "Actions"];

export class TenantsPage {
  constructor(section) {
    this.section = section;
    this.tenants = [];
    this.editing = null;  // the tenant being edited, or null when creating
    this.outcome = h("div", { class: "outcome", role: "status", tabindex: "-1" });
    this.body = h("tbody");
    this.form = this.buildForm();
    replace(section,
      h("div", { class: "page-head" },
        h("h2", { id: "h-tenants" }, "Tenants"),
        h("button", { type: "button", onclick: () => this.openForm(null) }, "New tenant"),
        h("button", { type: "button", onclick: () => this.refresh() }, "Refresh"),
      ),
      this.outcome,
      h("table", { class: "tenants" },
        h("caption", { class: "sr-only" }, "Tenants"),
        h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
        this.body),
      this.form,
    );
  }

  async show() {
    await this.refresh();
  }

  hide() {}

  async refresh() {
    const res = await call("GET", "/admin/tenants");
    if (!res.ok) {
      showOutcome(this.outcome, "List tenants", res);
      return;
    }
    this.tenants = res.body.tenants;
    replace(this.body, this.tenants.length ? this.tenants.map((t) => this.row(t))
      : h("tr", {}, h("td", { colspan: COLUMNS.length }, "No tenants yet.")));
  }

  row(t) {
    const limits = LIMITS.filter(([, key]) => t[key] != null)
      .map(([, key, label]) => `${label}: ${t[key]}`);
    if (t.weight !== 1) limits.push(`Weight: ${t.weight}`);
    const button = (text, onclick) =>
      h("button", { type: "button", "aria-label": `${text} ${t.name}`, onclick }, text);
    const cells = [
      t.name,
      t.allowed_adapters.length ? t.allowed_adapters.join(", ") : "base model only",
      `adapter: ${t.default_adapter ?? "—"} · schema: ${t.default_schema ?? "—"}`,
      limits.length ? limits.join(" · ") : "none",
      String(t.num_keys),
      h("div", { class: "actions" },
        button("Edit", () => this.openForm(t)),
        button("Issue key", () => this.issueKey(t.name)),
        button("Delete", () => this.remove(t.name)),
      ),
    ];
    return h("tr", { "data-tenant": t.name },
      cells.map((cell, i) => h("td", { "data-label": COLUMNS[i] }, cell)));
  }

  buildForm() {
    const form = h("form", { class: "card stack", hidden: true, novalidate: true,
      "aria-labelledby": "h-tenant-form" },
      h("h3", { id: "h-tenant-form" }, "New tenant"),
      field("tenant-name", "Name", { required: true, autocomplete: "off" }, NAME_RULE),
      field("tenant-allowed", "Allowed adapters", { autocomplete: "off" },
        "Comma-separated adapter names, * for every adapter; empty: the base model only"),
      h("div", { class: "grid" },
        field("tenant-default-adapter", "Default adapter", { autocomplete: "off" }),
        field("tenant-default-schema", "Default schema", { autocomplete: "off" }),
        LIMITS.map(([id, , label]) => field(id, label, { inputmode: "decimal" })),
        field("tenant-weight", "Weight (share when tenants wait)", { inputmode: "decimal" },
          "0.001 to 1000; 1 by default"),
      ),
      h("p", { class: "help" }, "Escalation overrides are kept as they are."),
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Save tenant"),
        h("button", { type: "button", class: "secondary", onclick: () => this.closeForm() },
          "Cancel"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    return form;
  }

  openForm(tenant) {
    this.editing = tenant;
    const form = this.form;
    form.reset();
    clearFieldErrors(form);
    form.querySelector("h3").textContent = tenant ? `Edit tenant ${tenant.name}` : "New tenant";
    const name = form.querySelector("#tenant-name");
    name.readOnly = tenant !== null;
    if (tenant) {
      name.value = tenant.name;
      form.querySelector("#tenant-allowed").value = tenant.allowed_adapters.join(", ");
      form.querySelector("#tenant-default-adapter").value = tenant.default_adapter ?? "";
      form.querySelector("#tenant-default-schema").value = tenant.default_schema ?? "";
      for (const [id, key] of LIMITS) form.querySelector(`#${id}`).value = tenant[key] ?? "";
      form.querySelector("#tenant-weight").value = tenant.weight;
    }
    form.hidden = false;
    (tenant ? form.querySelector("#tenant-allowed") : name).focus();
  }

  closeForm() {
    this.form.hidden = true;
    this.editing = null;
  }

  // The body the admin API takes, or null after marking what is wrong.
  readForm() {
    const form = this.form;
    clearFieldErrors(form);
    const get = (id) => form.querySelector(`#${id}`);
    const name = get("tenant-name");
    let ok = NAME_RE.test(name.value) || fieldError(name, `The name must be ${NAME_RULE}.`);
    if (!this.editing && this.tenants.some((t) => t.name === name.value)) {
      ok = fieldError(name, `A tenant named ${name.value} exists; use its Edit button.`);
    }
    const allowed = get("tenant-allowed").value.split(",").map((s) => s.trim()).filter(Boolean);
    const badName = allowed.find((a) => a !== "*" && !NAME_RE.test(a));
    if (badName) ok = fieldError(get("tenant-allowed"), `${badName} is not * or ${NAME_RULE}.`);
    const body = { allowed_adapters: allowed, escalation: this.editing?.escalation ?? {} };
    for (const [id, key] of [["tenant-default-adapter", "default_adapter"],
      ["tenant-default-schema", "default_schema"]]) {
      const value = get(id).value.trim();
      if (value && !NAME_RE.test(value)) ok = fieldError(get(id), `Must be ${NAME_RULE}.`);
      body[key] = value || null;
    }
    const adapter = body.default_adapter;
    if (adapter && !allowed.includes("*") && !allowed.includes(adapter)) {
      ok = fieldError(get("tenant-default-adapter"), "Must be one of the allowed adapters.");
    }
    for (const [id, key, , kind] of LIMITS) {
      const text = get(id).value.trim();
      const value = Number(text);
      if (!text) body[key] = null;
      else if (kind === "int" && !(Number.isInteger(value) && value >= 1)) {
        ok = fieldError(get(id), "A whole number of at least 1, or empty for no limit.");
      } else if (!(Number.isFinite(value) && value > 0)) {
        ok = fieldError(get(id), "A number above 0, or empty for no limit.");
      } else body[key] = value;
    }
    const weight = get("tenant-weight").value.trim();
    body.weight = weight ? Number(weight) : 1;
    if (!(Number.isFinite(body.weight) && body.weight >= 0.001 && body.weight <= 1000)) {
      ok = fieldError(get("tenant-weight"), "A number from 0.001 to 1000.");
    }
    return ok ? { name: name.value, body } : null;
  }

  async save() {
    const read = this.readForm();
    if (!read) {
      this.form.querySelector("[aria-invalid]")?.focus();
      return;
    }
    const res = await call("PUT", `/admin/tenants/${encodeURIComponent(read.name)}`,
      { json: read.body });
    if (res.status === 401 || res.status === 403) return;
    if (res.ok) this.closeForm();
    await this.done(`Save tenant ${read.name}`, res);
  }

  async issueKey(name) {
    const res = await call("POST", `/admin/tenants/${encodeURIComponent(name)}/keys`);
    if (res.status === 401 || res.status === 403) return;
    await this.done(`Issue a key for ${name}`, res);
  }

  async remove(name) {
    const sure = await confirmAction(
      `Delete tenant ${name}? Its keys stop working at once.`, `Delete ${name}`);
    if (!sure) return;
    const res = await call("DELETE", `/admin/tenants/${encodeURIComponent(name)}`);
    if (res.status === 401 || res.status === 403) return;
    await this.done(`Delete tenant ${name}`, res);
  }

  // Shows the answer; a new key goes to the shown-once dialog, never into the page.
  async done(action, res) {
    const key = res.ok ? res.body.api_key : undefined;
    const shown = key ? { ...res, body: { ...res.body, api_key: "(shown once in a dialog)" } }
      : res;
    await this.refresh();
    showOutcome(this.outcome, action, shown);
    if (key) await showKeyOnce(res.body.tenant?.name ?? res.body.tenant, key);
    this.outcome.focus();
  }
}
