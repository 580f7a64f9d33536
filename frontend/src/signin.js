// The sign-in page: takes a token (typed, or from a link's #token=), shows the pages its role
// may use, and goes straight on to the page asked for (?next=) when the role may use it.
import "./style.css";
import { allowedPages, signIn, signOut, token } from "./session.js";

const form = document.getElementById("signin");
const message = document.getElementById("message");
const params = new URLSearchParams(location.search);

async function show() {
  const pages = await allowedPages();
  if (pages === null) {
    sessionStorage.clear();
    message.textContent = "This token is not known to the server (or was revoked).";
    return;
  }
  const next = params.get("next");
  if (next && pages.some((page) => page.path === next)) {
    location.replace(next);
    return;
  }
  form.hidden = true;
  document.getElementById("choose").hidden = false;
  document.getElementById("pages").replaceChildren(...pages.map((page) => {
    const li = document.createElement("li");
    li.innerHTML = `<a href="${page.path}">${page.title}</a>`;
    return li;
  }));
  if (!pages.length) message.textContent = "This token's role has no page here (it may use the API).";
  if (next && !pages.some((page) => page.path === next)) {
    document.getElementById("choose").insertAdjacentHTML("afterbegin", `<p class="warn">Your role may not open ${next}.</p>`);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(document.getElementById("token").value);
  message.textContent = "";
  show();
});
document.getElementById("signout").addEventListener("click", signOut);
if (params.get("expired")) message.textContent = "Please sign in: the token was refused.";
if (token()) show();
