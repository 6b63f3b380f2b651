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

function modal(dialog, initialFocus) {
  const opener = document.activeElement;
  dialog.returnValue = "cancel";
  dialog.showModal();
  initialFocus.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "ok");
    }, { once: true });
  });
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
  byId(id).addEventListener("click", () => byId(id).closest("dialog").close(value));
}
byId("key-copy").addEventListener("click", copyKey);
