// Adapters: names, versions, alias and rollback history, evaluation numbers, residency;
// promote, roll back, load, unload, delete (confirmed), upload an archive, register.

import { call } from "./api.js";
import {
  NAME_RE, NAME_RULE, bytes, clearFieldErrors, field, fieldError, h, number, replace,
  showOutcome,
} from "./dom.js";
import { confirmAction } from "./dialogs.js";

const COLUMNS = ["Version", "Rank", "Size", "Accuracy", "Macro-F1", "Calibration",
  "Residency", "Actions"];

export class AdaptersPage {
  constructor(section) {
    this.section = section;
    this.summary = h("p", { class: "summary" });
    this.list = h("div", { class: "adapter-list" });
    this.outcome = h("div", { class: "outcome", role: "status", tabindex: "-1" });
    this.upload = this.uploadForm();
    this.register = this.registerForm();
    replace(section,
      h("div", { class: "page-head" },
        h("h2", { id: "h-adapters" }, "Adapters"),
        h("button", { type: "button", onclick: () => this.refresh() }, "Refresh"),
      ),
      this.summary, this.outcome, this.list,
      h("section", { class: "card", "aria-labelledby": "h-add-version" },
        h("h3", { id: "h-add-version" }, "Add a version"),
        h("div", { class: "two-forms" }, this.upload, this.register),
      ),
    );
  }

  async show() {
    await this.refresh();
  }

  hide() {}

  async refresh() {
    const res = await call("GET", "/admin/adapters");
    if (!res.ok) {
      showOutcome(this.outcome, "List adapters", res);
      return;
    }
    const { adapters, engine } = res.body;
    this.summary.textContent = `${adapters.length} adapters · engine slots: ` +
      `${engine.loaded} of ${engine.capacity} loaded`;
    replace(this.list, adapters.length ? adapters.map((a) => this.card(a))
      : h("p", {}, "No adapters registered yet."));
  }

  card(adapter) {
    const name = adapter.name;
    const history = adapter.history.length ? adapter.history.join(" → ") : "none";
    const rollback = h("button", {
      type: "button", disabled: adapter.history.length === 0,
      "aria-label": `Roll back ${name}`,
      onclick: () => this.act(`Roll back ${name}`, "POST", `/admin/adapters/${enc(name)}/rollback`),
    }, "Roll back");
    return h("article", { class: "card adapter", "aria-labelledby": `adapter-${name}` },
      h("div", { class: "card-head" },
        h("h3", { id: `adapter-${name}` }, name),
        h("span", { class: "alias", "data-alias": name }, `current: ${adapter.current}`),
        rollback,
      ),
      h("p", { class: "history" }, `Rollback history (oldest first): ${history}`),
      h("table", { class: "versions" },
        h("caption", { class: "sr-only" }, `Versions of ${name}`),
        h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, adapter.versions.map((v) => this.row(adapter, v))),
      ),
    );
  }

  row(adapter, v) {
    const name = adapter.name;
    const isCurrent = v.version === adapter.current;
    const ev = v.evaluation || {};
    const path = `/admin/adapters/${enc(name)}`;
    const label = `${name} ${v.version}`;
    const button = (text, onclick, disabled = false) =>
      h("button", { type: "button", disabled, "aria-label": `${text} ${label}`, onclick }, text);
    const calibration = ev.ece !== undefined || ev.temperature !== undefined
      ? `ECE ${number(ev.ece)} · T ${number(ev.temperature)}` : "—";
    const cells = [
      [v.version, isCurrent ? h("span", { class: "badge" }, "current") : null],
      v.rank, bytes(v.size_bytes), number(ev.accuracy), number(ev.macro_f1), calibration,
      `${v.loaded ? "loaded" : "not loaded"} · ${v.requests_running} running`,
      h("div", { class: "actions" },
        button("Promote", () => this.act(`Promote ${label}`, "POST", `${path}/promote`,
          { version: v.version }), isCurrent),
        button("Load", () => this.act(`Load ${label}`, "POST", `${path}/load`,
          { version: v.version }), v.loaded),
        button("Unload", () => this.act(`Unload ${label}`, "POST", `${path}/unload`,
          { version: v.version }), !v.loaded),
        button("Delete", () => this.remove(name, v.version), isCurrent),
      ),
    ];
    return h("tr", { "data-version": label },
      cells.map((cell, i) => h("td", { "data-label": COLUMNS[i] }, cell)));
  }

  async remove(name, version) {
    const sure = await confirmAction(
      `Delete ${name} ${version}? Its files are removed from the store; this cannot be undone.`,
      `Delete ${version}`,
    );
    if (sure) {
      await this.act(`Delete ${name} ${version}`, "DELETE",
        `/admin/adapters/${enc(name)}/${enc(version)}`);
    }
  }

  async act(action, method, path, json) {
    const res = await call(method, path, json === undefined ? {} : { json });
    await this.afterForm(action, res);
  }

  uploadForm() {
    const form = h("form", { class: "stack", "aria-labelledby": "h-upload", novalidate: true },
      h("h4", { id: "h-upload" }, "Upload an archive"),
      field("upload-name", "Adapter name", { required: true, autocomplete: "off" }),
      field("upload-version", "Version", { required: true, autocomplete: "off" }),
      field("upload-file", "Archive (.tar, .tar.gz) of one PEFT folder",
        { type: "file", accept: ".tar,.tar.gz,.tgz,application/x-tar,application/gzip" }),
      h("button", { type: "submit" }, "Upload"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendUpload(form);
    });
    return form;
  }

  async sendUpload(form) {
    clearFieldErrors(form);
    const [name, version, file] = ["upload-name", "upload-version", "upload-file"]
      .map((id) => form.querySelector(`#${id}`));
    const chosen = file.files[0];
    const ok = [
      NAME_RE.test(name.value) || fieldError(name, `The name must be ${NAME_RULE}.`),
      NAME_RE.test(version.value) || fieldError(version, `The version must be ${NAME_RULE}.`),
      (chosen && chosen.size > 0) || fieldError(file, "Choose a non-empty archive."),
    ].every(Boolean);
    if (!ok) return;
    const action = `Upload ${name.value} ${version.value}`;
    const query = `name=${enc(name.value)}&version=${enc(version.value)}`;
    const res = await call("POST", `/admin/adapters/upload?${query}`,
      { body: chosen, contentType: "application/octet-stream" });
    if (res.ok) form.reset();
    await this.afterForm(action, res);
  }

  registerForm() {
    const form = h("form", { class: "stack", "aria-labelledby": "h-register", novalidate: true },
      h("h4", { id: "h-register" }, "Register a version already in the store"),
      field("register-path", "Store path", { required: true, placeholder: "demo/v2",
        autocomplete: "off" }, "<name>/<version> under the gateway's adapter_store"),
      h("button", { type: "submit" }, "Register"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      const input = form.querySelector("#register-path");
      const parts = input.value.trim().split("/");
      if (parts.length !== 2 || !parts.every((p) => NAME_RE.test(p))) {
        fieldError(input, `Write <name>/<version>, each ${NAME_RULE}.`);
        return;
      }
      const res = await call("POST", "/admin/adapters", { json: { path: parts.join("/") } });
      if (res.ok) form.reset();
      await this.afterForm(`Register ${parts.join("/")}`, res);
    });
    return form;
  }

  // Shows the answer above the list, and moves focus there so a keyboard user hears it
  // and continues from it (the list was redrawn under them).
  async afterForm(action, res) {
    if (res.status === 401 || res.status === 403) return;  // signed out already
    await this.refresh();
    showOutcome(this.outcome, action, res);
    this.outcome.focus();
  }
}

function enc(text) {
  return encodeURIComponent(text);
}
