// The console UI: a hash router over two pages, the run list and a run.
// Plain ES modules, no build step; everything it shows comes from the console's own API.

import { api, apiKey, setApiKey, AuthRequired } from "./api.js";
import { listPage } from "./list.js";
import { runPage } from "./run.js";

const main = document.getElementById("main");
const liveBadge = document.getElementById("live");
const keyButton = document.getElementById("key-button");
const keyDialog = document.getElementById("key-dialog");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");

let current = null;

function setLiveState(state) {
  liveBadge.dataset.state = state;
  liveBadge.textContent = state;
}

function askForKey(message) {
  keyError.hidden = !message;
  keyError.textContent = message || "";
  keyInput.value = "";
  if (!keyDialog.open) keyDialog.showModal();
}

keyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  try {
    await api("/runs?limit=1");
  } catch (error) {
    if (error instanceof AuthRequired) {
      setApiKey(null);
      askForKey("That key was not accepted.");
      return;
    }
  }
  keyDialog.close();
  keyButton.hidden = false;
  route();
});

keyButton.addEventListener("click", () => askForKey(""));

function route() {
  if (current) current.close();
  const hash = window.location.hash || "#/";
  const options = { onState: setLiveState, onAuth: () => askForKey(apiKey() ? "The key is no longer accepted." : "") };
  const match = hash.match(/^#\/runs\/([^/?]+)/);
  current = match ? runPage(main, decodeURIComponent(match[1]), options) : listPage(main, options);
}

window.addEventListener("hashchange", route);
if (apiKey()) keyButton.hidden = false;
route();
