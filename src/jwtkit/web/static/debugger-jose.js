// Token decoding and signature verification for the debugger page, in the browser only, through WebCrypto.
// Nothing here performs network I/O: the token and the key stay in this page (no fetch, no XHR, no forms).
// The rules follow jwtkit's core where a browser can: exact base64url (RFC 7515 §2), one algorithm per key
// (RFC 8725 §3.1), `none` never verified, exact signature lengths (RFC 7518 §3), PSS salt = hash length.

const HASH_BYTES = { "SHA-256": 32, "SHA-384": 48, "SHA-512": 64 };

// One entry per alg (RFC 7518 §3.1, RFC 8037, RFC 9864); nothing below switches on the alg string again.
export const ALGORITHMS = Object.freeze({
  HS256: { family: "hmac", hash: "SHA-256" },
  HS384: { family: "hmac", hash: "SHA-384" },
  HS512: { family: "hmac", hash: "SHA-512" },
  RS256: { family: "rsa", name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  RS384: { family: "rsa", name: "RSASSA-PKCS1-v1_5", hash: "SHA-384" },
  RS512: { family: "rsa", name: "RSASSA-PKCS1-v1_5", hash: "SHA-512" },
  PS256: { family: "rsa", name: "RSA-PSS", hash: "SHA-256" },
  PS384: { family: "rsa", name: "RSA-PSS", hash: "SHA-384" },
  PS512: { family: "rsa", name: "RSA-PSS", hash: "SHA-512" },
  ES256: { family: "ec", curve: "P-256", hash: "SHA-256", signatureBytes: 64 },
  ES384: { family: "ec", curve: "P-384", hash: "SHA-384", signatureBytes: 96 },
  ES512: { family: "ec", curve: "P-521", hash: "SHA-512", signatureBytes: 132 },
  EdDSA: { family: "okp", signatureBytes: 64 },
  Ed25519: { family: "okp", signatureBytes: 64 },
});

export class TokenError extends Error {}

const SEGMENT = /^[A-Za-z0-9_-]*$/;
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

export function base64urlDecode(segment, what) {
  if (!SEGMENT.test(segment) || segment.length % 4 === 1) {
    throw new TokenError(`the ${what} is not base64url (RFC 7515 §2: A-Z a-z 0-9 - _ and no padding)`);
  }
  const padded = segment.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((segment.length + 3) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function parseJSONSegment(segment, what) {
  const bytes = base64urlDecode(segment, what);
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new TokenError(`the ${what} is not UTF-8 text`);
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TokenError(`the ${what} is not JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TokenError(`the ${what} must be a JSON object`);
  }
  return value;
}

// Split and decode without verifying: what the page shows as soon as a token is pasted.
export function decodeToken(input) {
  let text = input.trim();
  if (/^bearer\s+/i.test(text)) text = text.replace(/^bearer\s+/i, "");
  const parts = text.split(".");
  if (parts.length === 5) throw new TokenError("this is an encrypted token (JWE, five parts); only JWS is shown");
  if (parts.length !== 3) {
    throw new TokenError(`a JWT has exactly three parts separated by dots; this has ${parts.length}`);
  }
  const header = parseJSONSegment(parts[0], "header");
  const claims = parseJSONSegment(parts[1], "payload");
  const signature = base64urlDecode(parts[2], "signature");
  return {
    parts,
    header,
    claims,
    signature,
    signingInput: new TextEncoder().encode(`${parts[0]}.${parts[1]}`),
  };
}

function algorithmEntry(header) {
  const alg = header.alg;
  if (typeof alg !== "string") throw new TokenError("the header has no alg");
  if (alg.toLowerCase() === "none") throw new TokenError('alg "none" is never verified (RFC 8725 §3.1)');
  const entry = ALGORITHMS[alg];
  if (!entry) throw new TokenError(`the algorithm ${alg} is not supported`);
  return entry;
}

function importParams(entry) {
  switch (entry.family) {
    case "hmac": return { name: "HMAC", hash: entry.hash };
    case "rsa": return { name: entry.name, hash: entry.hash };
    case "ec": return { name: "ECDSA", namedCurve: entry.curve };
    default: return { name: "Ed25519" };
  }
}

function verifyParams(entry) {
  switch (entry.family) {
    case "hmac": return { name: "HMAC" };
    case "rsa":
      // RFC 7518 §3.5: the PSS salt is exactly as long as the hash output.
      return entry.name === "RSA-PSS" ? { name: "RSA-PSS", saltLength: HASH_BYTES[entry.hash] } : { name: entry.name };
    case "ec": return { name: "ECDSA", hash: entry.hash };
    default: return { name: "Ed25519" };
  }
}

function pemBody(text) {
  const match = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(text);
  if (!match) throw new TokenError("the PEM has no matching BEGIN/END lines");
  const label = match[1];
  const b64 = match[2].replace(/\s+/g, "");
  let binary;
  try {
    binary = atob(b64);
  } catch {
    throw new TokenError("the PEM body is not base64");
  }
  const der = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) der[i] = binary.charCodeAt(i);
  return { label, der };
}

async function publicFromPrivate(privateKey, params) {
  // WebCrypto cannot verify with a private key: export it, keep the public members, import those.
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return importPublicJwk(jwk, params);
}

async function importPublicJwk(jwk, params) {
  const publicJwk = { ...jwk };
  for (const member of [...PRIVATE_MEMBERS, "key_ops", "use", "ext", "alg"]) delete publicJwk[member];
  return crypto.subtle.importKey("jwk", publicJwk, params, false, ["verify"]);
}

function chooseJwk(value, header, alg) {
  if (!Array.isArray(value.keys)) return value;
  const keys = value.keys.filter((k) => k && typeof k === "object");
  if (typeof header.kid === "string") {
    // RFC 8725 §3.10 / R9: an exact kid match, or no key at all.
    const match = keys.find((k) => k.kid === header.kid && (k.alg === undefined || k.alg === alg));
    if (!match) throw new TokenError(`no key in the JWKS has kid ${JSON.stringify(header.kid)}`);
    return match;
  }
  const match = keys.find((k) => k.alg === alg);
  if (!match) throw new TokenError(`no key in the JWKS is bound to ${alg}`);
  return match;
}

async function importKey(entry, alg, header, keyText, keyType) {
  const params = importParams(entry);
  const kind = keyType === "auto" ? guessKeyType(keyText) : keyType;
  if (kind === "secret") {
    if (entry.family !== "hmac") throw new TokenError(`${alg} is verified with a public key (PEM or JWK), not a secret`);
    const secret = new TextEncoder().encode(keyText);
    const note = secret.length < HASH_BYTES[entry.hash]
      ? `the secret is ${secret.length} bytes; jwtkit refuses ${alg} secrets shorter than ${HASH_BYTES[entry.hash]} (RFC 7518 §3.2)`
      : "";
    return { key: await crypto.subtle.importKey("raw", secret, params, false, ["verify"]), note };
  }
  if (kind === "pem") {
    if (entry.family === "hmac") throw new TokenError(`${alg} is verified with a secret, not a PEM key`);
    const { label, der } = pemBody(keyText);
    if (label === "PUBLIC KEY") return { key: await crypto.subtle.importKey("spki", der, params, false, ["verify"]), note: "" };
    if (label === "PRIVATE KEY") {
      const privateKey = await crypto.subtle.importKey("pkcs8", der, params, true, ["sign"]);
      return { key: await publicFromPrivate(privateKey, params), note: "used the public half of the private key" };
    }
    throw new TokenError(`a "${label}" PEM is not supported: give an SPKI "PUBLIC KEY" (openssl pkey -pubout)`);
  }
  let value;
  try {
    value = JSON.parse(keyText);
  } catch {
    throw new TokenError("the JWK is not JSON");
  }
  if (value === null || typeof value !== "object") throw new TokenError("the JWK must be a JSON object");
  const jwk = chooseJwk(value, header, alg);
  if (jwk.alg !== undefined && jwk.alg !== alg) {
    // R5: a key is bound to exactly one algorithm; a token may not pick another.
    throw new TokenError(`the JWK is bound to ${jwk.alg}, the token says ${alg}`);
  }
  if (entry.family === "hmac") {
    if (jwk.kty !== "oct" || typeof jwk.k !== "string") throw new TokenError(`${alg} needs an "oct" JWK with k`);
    const raw = base64urlDecode(jwk.k, "JWK k member");
    return { key: await crypto.subtle.importKey("raw", raw, params, false, ["verify"]), note: "" };
  }
  return { key: await importPublicJwk(jwk, params), note: "" };
}

export function guessKeyType(keyText) {
  const text = keyText.trim();
  if (text.startsWith("-----BEGIN")) return "pem";
  if (text.startsWith("{")) return "jwk";
  return "secret";
}

function expectedSignatureBytes(entry, key) {
  if (entry.family === "hmac") return HASH_BYTES[entry.hash];
  if (entry.family === "rsa") return Math.ceil(key.algorithm.modulusLength / 8);
  return entry.signatureBytes;
}

// Verify the decoded token with the pasted key. Resolves to {valid, reason, note}; never throws.
export async function verifyToken(decoded, keyText, keyType) {
  if (!globalThis.crypto || !crypto.subtle) {
    return { valid: false, reason: "WebCrypto needs a secure context: open this page on https or 127.0.0.1" };
  }
  let entry;
  let imported;
  try {
    entry = algorithmEntry(decoded.header);
    if (!keyText.trim()) throw new TokenError("paste a secret, a PEM public key or a JWK first");
    imported = await importKey(entry, decoded.header.alg, decoded.header, keyText, keyType);
  } catch (error) {
    if (error instanceof TokenError) return { valid: false, reason: error.message };
    if (error && error.name === "NotSupportedError") {
      return { valid: false, reason: `this browser's WebCrypto does not support ${decoded.header.alg}` };
    }
    return { valid: false, reason: `the key does not fit ${decoded.header.alg} (${error && error.name})` };
  }
  if (decoded.signature.length !== expectedSignatureBytes(entry, imported.key)) {
    return { valid: false, reason: "invalid signature (wrong length for this algorithm)", note: imported.note };
  }
  try {
    const ok = await crypto.subtle.verify(verifyParams(entry), imported.key, decoded.signature, decoded.signingInput);
    return { valid: ok, reason: ok ? "signature verified" : "invalid signature", note: imported.note };
  } catch (error) {
    return { valid: false, reason: `verification failed (${error && error.name})`, note: imported.note };
  }
}
