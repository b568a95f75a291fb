// A real OpenID Provider for the browser-session tests: panva's oidc-provider (certified), on loopback.
//
//   node op.js '{"port": 0, "ttl": {"AccessToken": 5}, "clients": [{...}]}'    (or the JSON in $OP_CONFIG)
//
// When it listens it prints one JSON line: {"issuer": "http://127.0.0.1:PORT", "port": PORT}. It exits when
// its stdin closes, so a test that dies never leaves it running.
//
// Configuration (every key optional):
//   port      loopback port, 0 (default) picks a free one
//   host      the host name of the issuer URL (default "127.0.0.1"; "localhost" puts the OP on another
//             site than a page on 127.0.0.1, as a real provider is); it always listens on 127.0.0.1
//   ttl       seconds per artifact: AccessToken (60), IdToken (300), RefreshToken (86400),
//             ClientCredentials (60), Session, Grant, Interaction
//   clients   client metadata as oidc-provider takes it (client_id, client_secret, redirect_uris,
//             post_logout_redirect_uris, backchannel_logout_uri, backchannel_logout_session_required,
//             jwks for private_key_jwt...). Defaults: response_types ["code"], grant_types authorization_code,
//             refresh_token and client_credentials, token_endpoint_auth_method client_secret_basic
//             (private_key_jwt when jwks is given), scope "openid profile email offline_access api".
//   conform_id_token_claims   false (default): the ID token carries the profile/email claims the scopes
//             ask for (the BFF reads them from there); true: only in userinfo, as the spec's strict mode
//
// The provider: authorization code flow with PKCE required (S256), devInteractions (its own login page,
// any login name and password, and consent page), revocation, back-channel logout, RP-initiated logout,
// client credentials; a refresh token for every code grant (offline_access or not) and rotated on each
// use, so a refresh token used twice revokes the grant (the race a BFF must not lose); claims sub, name
// ("User <login>"), email ("<login>@example.test") for any account.
//
// Test-only endpoints (never in a real OP), JSON in and out:
//   GET  /__test/stats                 {"grants": {grant_type: n}, "grant_errors": {grant_type: n},
//                                       "requests": {"METHOD /path STATUS": n}, "backchannel": {...}}
//   POST /__test/clients               body: client metadata (defaults as above); adds or replaces it
//   POST /__test/ttl                   body: {"AccessToken": 3600, ...}: changes lifetimes from now on
//   POST /__test/claims                body: {"sub": "alice", "claims": {"name": "..."}}: that account's
//                                      claims in the tokens issued from now on (as if changed at the OP)
//   GET  /__test/sessions?sub=alice    [{"client_id", "sid", "grant_id"}] of that account's logins
//   POST /__test/revoke                body: {"sub": "alice"}: revokes every grant of that account
//                                       (access and refresh tokens included); {"revoked": n}
//   POST /__test/backchannel-logout    body: {"sub", "client_id"?, "sid"?}: the OP sends its real
//                                       back-channel logout token to the client's backchannel_logout_uri for
//                                       each of the account's logins (or the one sid); {"sent": n, "errors": [...]}
//   POST /__test/logout-token          body: {"client_id", "sub", "sid"?}: {"logout_token": "..."} signed by
//                                       the OP as back-channel logout would, not sent anywhere
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? process.env.OP_CONFIG ?? '{}');

// stdout carries the one ready line; the reader may close it after that line. oidc-provider logs notices
// with console.log/info (e.g. at RP-initiated logout): they go to stderr, so a closed stdout never kills
// the OP with EPIPE.
console.log = console.error;
console.info = console.error;
process.stdout.on('error', () => {});
// Start-up milestones on stderr: a test that waits too long for the ready line shows how far it got.
const milestone = (what) => process.stderr.write(`op.js: ${what} after ${Math.round(performance.now())} ms\n`);
milestone('modules loaded');

const ttl = {
  AccessToken: 60,
  ClientCredentials: 60,
  IdToken: 300,
  RefreshToken: 86400,
  Interaction: 600,
  Session: 86400,
  Grant: 86400,
  ...(config.ttl ?? {}),
};

function withDefaults(client) {
  const out = {
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    token_endpoint_auth_method: client.jwks ? 'private_key_jwt' : 'client_secret_basic',
    scope: 'openid profile email offline_access api',
    ...client,
  };
  if (out.backchannel_logout_uri && out.backchannel_logout_session_required === undefined) {
    out.backchannel_logout_session_required = true;
  }
  return out;
}

const stats = {
  grants: {},
  grant_errors: {},
  requests: {},
  backchannel: { success: 0, error: 0 },
};
// account id -> [{client_id, sid, grant_id}]
const logins = new Map();
// account id -> claims that replace its defaults (POST /__test/claims)
const claimOverrides = new Map();

// The key generation itself encodes the keys as JWKs. Exporting the generated KeyObject instead hung the
// OP now and then on Node.js 20: a garbage collection during the export finalized the generation job,
// whose destructor waits for the key's mutex that the export holds (gdb: ~KeyGenJob under ExportJWK).
const signingKey = {
  ...generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { format: 'jwk' },
    privateKeyEncoding: { format: 'jwk' },
  }).privateKey,
  kid: randomUUID(),
  use: 'sig',
  alg: 'RS256',
};
milestone('signing key made');

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      try {
        resolve(body ? JSON.parse(body) : {});
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function sessionsOf(sub, clientId, sid) {
  return (logins.get(sub) ?? []).filter(
    (l) => (!clientId || l.client_id === clientId) && (!sid || l.sid === sid),
  );
}

async function logoutToken(provider, client, sub, sid) {
  // As oidc-provider's own Client#backchannelLogout builds it.
  const token = new provider.IdToken({ sub }, { client, ctx: undefined });
  token.mask = { sub: null };
  token.set('events', { 'http://schemas.openid.net/event/backchannel-logout': {} });
  token.set('jti', randomUUID());
  if (client.backchannelLogoutSessionRequired || sid) {
    token.set('sid', sid);
  }
  return token.issue({ use: 'logout' });
}

async function testEndpoint(provider, req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /__test/stats':
      return send(res, 200, stats);
    case 'POST /__test/clients': {
      const client = withDefaults(await readJson(req));
      await provider.Client.adapter.upsert(client.client_id, client);
      // Resolving it now validates the metadata: a bad client is a 400 here, not a mystery later.
      await provider.Client.find(client.client_id);
      return send(res, 201, { client_id: client.client_id });
    }
    case 'POST /__test/ttl':
      Object.assign(ttl, await readJson(req));
      return send(res, 200, ttl);
    case 'POST /__test/claims': {
      const { sub, claims } = await readJson(req);
      claimOverrides.set(sub, claims ?? {});
      return send(res, 200, { sub, claims: claimOverrides.get(sub) });
    }
    case 'GET /__test/sessions':
      return send(res, 200, sessionsOf(url.searchParams.get('sub')));
    case 'POST /__test/revoke': {
      const { sub, client_id: clientId } = await readJson(req);
      const found = sessionsOf(sub, clientId);
      for (const { grant_id: grantId } of found) {
        await Promise.all([
          provider.AccessToken.revokeByGrantId(grantId),
          provider.RefreshToken.revokeByGrantId(grantId),
          provider.AuthorizationCode.revokeByGrantId(grantId),
          provider.Grant.adapter.destroy(grantId),
        ]);
      }
      return send(res, 200, { revoked: found.length });
    }
    case 'POST /__test/backchannel-logout': {
      const { sub, client_id: clientId, sid } = await readJson(req);
      const errors = [];
      let sent = 0;
      for (const login of sessionsOf(sub, clientId, sid)) {
        const client = await provider.Client.find(login.client_id);
        if (!client?.backchannelLogoutUri) {
          continue;
        }
        try {
          await client.backchannelLogout(sub, login.sid);
          stats.backchannel.success += 1;
          sent += 1;
        } catch (err) {
          stats.backchannel.error += 1;
          errors.push(String(err.message));
        }
      }
      return send(res, 200, { sent, errors });
    }
    case 'POST /__test/logout-token': {
      const { sub, client_id: clientId, sid } = await readJson(req);
      const client = await provider.Client.find(clientId);
      if (!client) {
        return send(res, 404, { error: 'no such client' });
      }
      return send(res, 200, { logout_token: await logoutToken(provider, client, sub, sid) });
    }
    default:
      return send(res, 404, { error: `no test endpoint ${route}` });
  }
}

const server = createServer();
milestone('listening');
server.listen(config.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://${config.host ?? '127.0.0.1'}:${port}`;

  const provider = new Provider(issuer, {
    clients: (config.clients ?? []).map(withDefaults),
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      profile: ['name'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'offline_access', 'api'],
    conformIdTokenClaims: config.conform_id_token_claims ?? false,
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            name: `User ${id}`,
            email: `${id}@example.test`,
            email_verified: true,
            ...(claimOverrides.get(id) ?? {}),
          };
        },
      };
    },
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
    },
    pkce: { required: () => true },
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    rotateRefreshToken: true,
    ttl: Object.fromEntries(Object.keys(ttl).map((kind) => [kind, () => ttl[kind]])),
    // oidc-provider refuses outgoing calls to loopback addresses (SSRF protection); the back-channel
    // logout calls of this test OP go to BFFs on 127.0.0.1, so they go through the plain fetch.
    fetch(url, options) {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
  });

  provider.on('grant.success', (ctx) => {
    const type = ctx.oidc.params.grant_type;
    stats.grants[type] = (stats.grants[type] ?? 0) + 1;
  });
  provider.on('grant.error', (ctx) => {
    const type = ctx.oidc.params?.grant_type ?? 'unknown';
    stats.grant_errors[type] = (stats.grant_errors[type] ?? 0) + 1;
  });
  provider.on('authorization.success', (ctx) => {
    const { session, client } = ctx.oidc;
    const list = logins.get(session.accountId) ?? [];
    const login = {
      client_id: client.clientId,
      sid: session.sidFor(client.clientId),
      grant_id: session.grantIdFor(client.clientId),
    };
    if (!list.some((l) => l.sid === login.sid && l.grant_id === login.grant_id && l.client_id === login.client_id)) {
      list.push(login);
    }
    logins.set(session.accountId, list);
  });

  const callback = provider.callback();
  server.on('request', (req, res) => {
    const url = new URL(req.url, issuer);
    res.on('finish', () => {
      const key = `${req.method} ${url.pathname} ${res.statusCode}`;
      stats.requests[key] = (stats.requests[key] ?? 0) + 1;
    });
    if (url.pathname.startsWith('/__test/')) {
      testEndpoint(provider, req, res, url).catch((err) => send(res, 400, { error: String(err.message) }));
      return;
    }
    callback(req, res);
  });

  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
  milestone(`ready on ${issuer}`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
