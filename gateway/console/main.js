// The console's shell: sign-in, the page buttons, and signing out when the key is refused.

import * as api from "./api.js";
import { byId } from "./dom.js";
import { AdaptersPage } from "./adapters.js";
import { TenantsPage } from "./tenants.js";
import { LivePage } from "./live.js";
import { PlaygroundPage } from "./playground.js";

const pages = {
  adapters: new AdaptersPage(byId("page-adapters")),
  tenants: new TenantsPage(byId("page-tenants")),
  live: new LivePage(byId("page-live")),
  playground: new PlaygroundPage(byId("page-playground")),
};
let current = null;

function showSignIn(message) {
  for (const page of Object.values(pages)) page.hide();
  current = null;
  byId("app").hidden = true;
  byId("signin").hidden = false;
  byId("signin-message").textContent = message;
  const input = byId("admin-key");
  input.value = "";
  input.focus();
}

async function open(name) {
  if (current) pages[current].hide();
  current = name;
  for (const button of document.querySelectorAll("[data-page]")) {
    const isCurrent = button.dataset.page === name;
    if (isCurrent) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const [key, page] of Object.entries(pages)) page.section.hidden = key !== name;
  await pages[name].show();
}

async function signIn(event) {
  event.preventDefault();
  const input = byId("admin-key");
  const key = input.value.trim();
  const message = byId("signin-message");
  if (!key) {
    message.textContent = "Enter the admin key (GATEWAY_ADMIN_KEY of this gateway).";
    input.focus();
    return;
  }
  message.textContent = "Checking the key…";
  api.signIn(key);
  input.value = "";
  const check = await api.call("GET", "/admin/adapters");
  if (!check.ok) {
    if (api.isSignedIn()) {  // not a refused key: the gateway could not check it
      api.signOut();
      showSignIn(`The gateway could not check the key: HTTP ${check.status} ${check.error?.message ?? ""}`);
    }
    return;  // a refused key: whenAuthLost already showed the reason
  }
  message.textContent = "";
  byId("signin").hidden = true;
  byId("app").hidden = false;
  await open("adapters");
  byId("nav-adapters").focus();
}

api.whenAuthLost((reason) => showSignIn(byId("app").hidden
  ? `The gateway refused this key (${reason}).`
  : `Signed out: the gateway refused the admin key (${reason}). Sign in again.`));
byId("signin-form").addEventListener("submit", signIn);
byId("sign-out").addEventListener("click", () => {
  api.signOut();
  showSignIn("Signed out. The key was forgotten.");
});
for (const button of document.querySelectorAll("[data-page]")) {
  button.addEventListener("click", () => open(button.dataset.page));
}
showSignIn("");
