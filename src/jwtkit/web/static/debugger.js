// The token debugger page: decode as you type, verify on demand. Everything stays in this page:
// the page has no form, makes no request with the token or the key, and never writes either into the URL.
import { decodeToken, guessKeyType, verifyToken, TokenError } from "./debugger-jose.js";
import { CLAIM_NOTES, DATE_CLAIMS, HEADER_NOTES, describeDate, warningsFor } from "./debugger-claims.js";

const $ = (id) => document.getElementById(id);

const tokenInput = $("token");
const keyInput = $("key");
const keyType = $("key-type");
const verifyButton = $("verify");
const result = $("verify-result");

let decoded = null;
let generation = 0; // ignores a verification that finishes after the input changed

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // always text, never HTML: the token is untrusted input
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function showParts(parts) {
  const target = $("encoded");
  clear(target);
  const classes = ["part-header", "part-payload", "part-signature"];
  parts.forEach((part, index) => {
    if (index > 0) target.appendChild(element("span", "dot", "."));
    target.appendChild(element("span", classes[index] || "part-extra", part));
  });
}

function fillTable(tableId, object, notes, nowSeconds) {
  const body = $(tableId).querySelector("tbody");
  clear(body);
  for (const [name, value] of Object.entries(object)) {
    const row = element("tr");
    row.dataset.claim = name;
    row.appendChild(element("th", "name", name));
    row.appendChild(element("td", "value", JSON.stringify(value)));
    let meaning = notes[name] || "";
    if (DATE_CLAIMS.has(name) && notes === CLAIM_NOTES) {
      const when = describeDate(name, value, nowSeconds);
      meaning = meaning ? `${meaning}. ${when}` : when;
      row.appendChild(element("td", "meaning", meaning));
      row.lastChild.dataset.date = "local";
    } else {
      row.appendChild(element("td", "meaning", meaning || "(not a registered name)"));
    }
    body.appendChild(row);
  }
}

function showWarnings(list) {
  const target = $("warnings");
  clear(target);
  for (const text of list) target.appendChild(element("li", "warning", text));
  $("warnings-section").hidden = list.length === 0;
}

function resetVerification() {
  generation += 1;
  result.textContent = "";
  result.className = "result";
  result.removeAttribute("data-state");
  $("verify-note").textContent = "";
}

function onTokenInput() {
  resetVerification();
  const text = tokenInput.value;
  const error = $("decode-error");
  error.textContent = "";
  if (!text.trim()) {
    decoded = null;
    $("decoded").hidden = true;
    clear($("encoded"));
    return;
  }
  try {
    decoded = decodeToken(text);
  } catch (failure) {
    decoded = null;
    $("decoded").hidden = true;
    showParts(text.trim().split("."));
    error.textContent = failure instanceof TokenError ? failure.message : "this is not a token";
    return;
  }
  const now = Date.now() / 1000;
  showParts(decoded.parts);
  $("header-json").textContent = JSON.stringify(decoded.header, null, 2);
  $("claims-json").textContent = JSON.stringify(decoded.claims, null, 2);
  fillTable("header-table", decoded.header, HEADER_NOTES, now);
  fillTable("claims-table", decoded.claims, CLAIM_NOTES, now);
  showWarnings(warningsFor(decoded.header, decoded.claims, now));
  $("alg").textContent = typeof decoded.header.alg === "string" ? decoded.header.alg : "?";
  $("decoded").hidden = false;
}

async function onVerify() {
  resetVerification();
  if (!decoded) {
    result.textContent = "paste a token first";
    result.dataset.state = "error";
    return;
  }
  const mine = generation;
  result.textContent = "verifying…";
  const outcome = await verifyToken(decoded, keyInput.value, keyType.value);
  if (mine !== generation) return;
  result.textContent = outcome.valid ? "Signature verified" : outcome.reason === "invalid signature"
    ? "Invalid signature" : `Invalid: ${outcome.reason}`;
  result.dataset.state = outcome.valid ? "valid" : "invalid";
  result.className = outcome.valid ? "result valid" : "result invalid";
  const notes = [outcome.note, outcome.valid ? timeNote(decoded.claims, Date.now() / 1000) : ""];
  $("verify-note").textContent = notes.filter(Boolean).join("; ");
}

// A valid signature is not a valid token: say so when the dates would make a verifier refuse it.
function timeNote(claims, now) {
  if (typeof claims.exp === "number" && claims.exp <= now) return "but the token has expired: a verifier refuses it";
  if (typeof claims.nbf === "number" && claims.nbf > now) return "but the token is not valid yet (nbf)";
  if (!("exp" in claims)) return "but the token has no exp: jwtkit refuses it by default";
  return "";
}

function onKeyInput() {
  resetVerification();
  const guess = keyInput.value.trim() ? guessKeyType(keyInput.value) : "";
  $("key-guess").textContent = keyType.value === "auto" && guess ? `read as: ${guess}` : "";
}

tokenInput.addEventListener("input", onTokenInput);
keyInput.addEventListener("input", onKeyInput);
keyType.addEventListener("change", onKeyInput);
verifyButton.addEventListener("click", onVerify);
$("clear").addEventListener("click", () => {
  tokenInput.value = "";
  keyInput.value = "";
  onTokenInput();
  onKeyInput();
});
if (tokenInput.value) onTokenInput();
