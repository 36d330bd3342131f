// What each registered header parameter and claim means (RFC 7515 §4.1, RFC 7519 §4.1, RFC 9068, OIDC),
// and how dates read in the visitor's local time.

export const HEADER_NOTES = Object.freeze({
  alg: "algorithm that signed the token (RFC 7515 §4.1.1); the verifier must fix it, never trust it",
  typ: "media type of the token, e.g. JWT or at+jwt for access tokens (RFC 9068)",
  kid: "key id: which of the issuer's keys signed it",
  cty: "content type of the payload (nested tokens)",
  crit: "extensions the verifier must understand; jwtkit understands none and refuses the token",
  jku: "URL of a key set; jwtkit never fetches keys named by the token (RFC 8725 §3.10)",
  x5u: "URL of an X.509 chain; never used to find a key",
  jwk: "a key embedded in the token; never trusted to verify the token itself",
  x5c: "an X.509 chain embedded in the token; never used to find a key",
  x5t: "thumbprint of an X.509 certificate",
  b64: "unencoded payload (RFC 7797); refused in JWTs",
  zip: "compression (JWE only); refused",
});

export const CLAIM_NOTES = Object.freeze({
  iss: "issuer: who made the token; verifiers compare it exactly",
  sub: "subject: whom the token is about, usually a user id",
  aud: "audience: the service(s) the token is meant for",
  exp: "expiration time: the token is refused at and after this instant",
  nbf: "not before: the token is refused before this instant",
  iat: "issued at: when the token was made",
  jti: "JWT ID: a unique id, for single use or revocation lists",
  sid: "session id: jwtkit revokes a session, and every token of it, by this id",
  scope: "space-separated permissions (RFC 8693 / RFC 9068)",
  client_id: "the OAuth client the token was issued to (RFC 9068)",
  auth_time: "when the user last authenticated",
  azp: "authorized party (OpenID Connect)",
  nonce: "replay protection value (OpenID Connect)",
  agent: "jwtkit: hash of the User-Agent the token is bound to",
});

export const DATE_CLAIMS = new Set(["exp", "nbf", "iat", "auth_time"]);

function span(seconds) {
  const s = Math.abs(seconds);
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  const days = Math.floor(s / 86400);
  return days === 1 ? "1 day" : `${days} days`;
}

// A NumericDate in local time, with a phrase such as "expires in 14 min" or "expired 2 days ago".
export function describeDate(claim, value, nowSeconds) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return "not a NumericDate (must be a JSON number of seconds; verification fails)";
  }
  const date = new Date(value * 1000);
  if (Number.isNaN(date.getTime())) return "out of range";
  const delta = value - nowSeconds;
  let relative;
  if (claim === "exp") relative = delta > 0 ? `expires in ${span(delta)}` : `expired ${span(delta)} ago`;
  else if (claim === "nbf") relative = delta > 0 ? `valid in ${span(delta)}` : `valid since ${span(delta)} ago`;
  else relative = delta > 0 ? `in ${span(delta)} (in the future!)` : `${span(delta)} ago`;
  return `${date.toLocaleString()} (local time), ${relative}`;
}

// Warnings a reader should see, like `jwtkit decode` prints them.
export function warningsFor(header, claims, nowSeconds) {
  const warnings = [];
  if (typeof header.alg === "string" && header.alg.toLowerCase() === "none") {
    warnings.push('alg is "none": an unsigned token, never accepted by jwtkit');
  }
  for (const member of ["jku", "x5u", "jwk", "x5c"]) {
    if (member in header) warnings.push(`the header carries ${member}: never use it to pick the verification key`);
  }
  if (!("exp" in claims)) warnings.push("no exp claim: this token never expires");
  else if (typeof claims.exp === "number") {
    const start = typeof claims.iat === "number" ? claims.iat : nowSeconds;
    if (claims.exp - start > 86400) warnings.push(`long lifetime (${span(claims.exp - start)})`);
    if (claims.exp <= nowSeconds) warnings.push("expired");
  }
  for (const name of Object.keys(claims)) {
    if (/pass(word|wd)?|pwd|secret|ssn|card|cvv|cvc|iban|private|api.?key|credential/i.test(name)) {
      warnings.push(`claim "${name}" looks sensitive: anyone holding the token can read the payload`);
    }
  }
  return warnings;
}
