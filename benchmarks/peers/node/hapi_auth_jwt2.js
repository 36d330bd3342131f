'use strict';
// Peer: @hapi/hapi + hapi-auth-jwt2, the plugin's documented set-up: the secret given as a string, the
// HS256 and issuer checks in verifyOptions, and a validate function that accepts every verified token
// ({ isValid: true }). No revocation check.
//
// With a string secret, jsonwebtoken 9 first tries crypto.createPublicKey on it for every verification
// and falls back to createSecretKey when that throws (auth0/node-jsonwebtoken#966, #1046): 2.5 ms per
// verification measured on node 20 on the benchmark's machine, against 58 µs with a KeyObject.
// PEER_KEY=prepared hands the plugin a KeyObject made once (crypto.createSecretKey), as the http peer
// does: the same plugin without that cost.
//
// Configuration from the environment: PEER_SECRET (the HS256 key, its UTF-8 bytes, as jwtkit reads
// JWT_SECRET), PEER_ISSUER, PEER_KEY (string, the default, or prepared), PORT. One process.
// Run: PEER_SECRET=... PORT=8000 node benchmarks/peers/node/hapi_auth_jwt2.js

const crypto = require('node:crypto');
const Hapi = require('@hapi/hapi');

const SECRET = process.env.PEER_SECRET || '';
const KEY = process.env.PEER_KEY === 'prepared' ? crypto.createSecretKey(Buffer.from(SECRET, 'utf8')) : SECRET;

async function main() {
  const server = Hapi.server({ host: '127.0.0.1', port: Number(process.env.PORT || 8000) });
  await server.register(require('hapi-auth-jwt2'));
  server.auth.strategy('jwt', 'jwt', {
    key: KEY,
    validate: async () => ({ isValid: true }),
    verifyOptions: { algorithms: ['HS256'], issuer: process.env.PEER_ISSUER || 'jwtkit' },
  });
  server.auth.default('jwt');
  server.route({
    method: 'GET',
    path: '/private',
    handler: (request) => {
      const claims = request.auth.credentials;
      return { message: 'This is private', user_id: claims.sub, session_id: claims.sid, expires: claims.exp };
    },
  });
  await server.start();
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => server.stop({ timeout: 1000 }).then(() => process.exit(0)));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
