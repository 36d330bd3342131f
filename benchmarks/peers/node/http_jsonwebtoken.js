'use strict';
// Peer: node's own http server + jsonwebtoken, verifying the HS256 bearer token with a key prepared once
// (crypto.createSecretKey), so jsonwebtoken does not try createPublicKey and createSecretKey on every call.
// No revocation check: the token's signature, exp and iss are all it looks at.
//
// Configuration from the environment: PEER_SECRET (the HS256 key, its UTF-8 bytes, as jwtkit reads
// JWT_SECRET), PEER_ISSUER, PORT. One process, no cluster.
// Run: PEER_SECRET=... PORT=8000 node benchmarks/peers/node/http_jsonwebtoken.js

const http = require('node:http');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');

const KEY = crypto.createSecretKey(Buffer.from(process.env.PEER_SECRET || '', 'utf8'));
const OPTIONS = { algorithms: ['HS256'], issuer: process.env.PEER_ISSUER || 'jwtkit' };
const UNAUTHORIZED = { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Bearer' };

function refuse(res, error) {
  res.writeHead(401, UNAUTHORIZED);
  res.end(JSON.stringify({ error }));
}

const server = http.createServer((req, res) => {
  if (req.method !== 'GET' || req.url !== '/private') {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end('{"error":"not_found"}');
    return;
  }
  const header = req.headers.authorization || '';
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== 'bearer') {
    refuse(res, 'missing_token');
    return;
  }
  let claims;
  try {
    claims = jwt.verify(header.slice(space + 1), KEY, OPTIONS);
  } catch (err) {
    refuse(res, 'invalid_token');
    return;
  }
  if (typeof claims.sub !== 'string' || typeof claims.exp !== 'number') {
    refuse(res, 'invalid_token');
    return;
  }
  const body = JSON.stringify({ message: 'This is private', user_id: claims.sub, session_id: claims.sid,
                                expires: claims.exp });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});

server.keepAliveTimeout = 65000;
server.listen(Number(process.env.PORT || 8000), '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
