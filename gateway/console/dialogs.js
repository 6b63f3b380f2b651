// Modal dialogs (the <dialog> elements of index.html): a confirmation before a destructive
// action, and a new tenant key shown once. A modal dialog keeps keyboard focus inside it
// and closes on Escape (counted as "cancel"); focus returns to where it was.

import { byId } from "./dom.js";

export function confirmAction(message, actionLabel) {
  const dialog = byId("confirm-dialog");
  byId("confirm-message").textContent = message;
  byId("confirm-ok").textContent = actionLabel;
  return modal(dialog, byId("confirm-cancel"));
}

// The key is in the page only while this dialog is open; closing it clears the field.
export async function showKeyOnce(tenant, key) {
  const dialog = byId("key-dialog");
  const input = byId("key-value");
  byId("key-tenant").textContent = tenant;
  byId("key-copied").textContent = "";
  input.value = key;
  await modal(dialog, input);
  input.value = "";
}

// The dialog -> the settle function of the modal open in it. A modal settles when its own
// button is pressed or on Escape, at that moment: the browser's "close" event comes later,
// as a task, and a quick Escape-then-Enter can reopen the dialog before it arrives, so a
// stale close event must never settle (or cancel) the modal opened after it.
const pending = new Map();

function modal(dialog, initialFocus) {
  const opener = document.activeElement;
  pending.get(dialog)?.("cancel");  // one modal per dialog: an unsettled one is cancelled
  return new Promise((resolve) => {
    const settle = (value) => {
      if (pending.get(dialog) !== settle) return;
      pending.delete(dialog);
      if (dialog.open) dialog.close(value);
      if (opener && opener.isConnected) opener.focus();
      resolve(value === "ok");
    };
    pending.set(dialog, settle);
    dialog.returnValue = "cancel";
    dialog.showModal();
    initialFocus.focus();
  });
}

function settle(dialog, value) {
  pending.get(dialog)?.(value);
}

async function copyKey() {
  const input = byId("key-value");
  const note = byId("key-copied");
  try {
    await navigator.clipboard.writeText(input.value);
    note.textContent = "Copied to the clipboard.";
  } catch {
    // No clipboard API (an http:// page off localhost): select it for Ctrl+C instead.
    input.select();
    note.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
}

for (const [id, value] of [["confirm-ok", "ok"], ["confirm-cancel", "cancel"],
  ["key-close", "ok"]]) {
  byId(id).addEventListener("click", () => settle(byId(id).closest("dialog"), value));
}
for (const dialog of document.querySelectorAll("dialog")) {
  dialog.addEventListener("cancel", () => settle(dialog, "cancel"));  // Escape
  // Closed some other way: settles only if the dialog is still closed when the event comes.
  dialog.addEventListener("close", () => {
    if (!dialog.open) settle(dialog, dialog.returnValue || "cancel");
  });
}
byId("key-copy").addEventListener("click", copyKey);
