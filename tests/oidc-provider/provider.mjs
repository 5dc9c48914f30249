// A real OpenID Connect provider (the npm package oidc-provider) for Weft's tests, on loopback only.
//
// Start:
//   node provider.mjs --port 0 \
//     --client '{"client_id":"weft","client_secret":"weft-secret","redirect_uris":["http://127.0.0.1:5000/signin-oidc"]}'
//
//   --port <n>       TCP port on 127.0.0.1; 0 (the default) lets the kernel pick a free one.
//   --client <json>  One confidential client, as OpenID Connect client metadata (repeat for more).
//                    Required: client_id, client_secret, redirect_uris. Defaults: grant_types
//                    ["authorization_code"], response_types ["code"], token_endpoint_auth_method
//                    "client_secret_basic". Either registered method accepts both client_secret_basic
//                    and client_secret_post at the token endpoint (oidc-provider treats them alike).
//                    Any other client metadata (e.g. post_logout_redirect_uris) is passed through.
//
// The issuer is http://127.0.0.1:<actual port>. Once listening, the script prints exactly one line
// "ready <issuer>" to stdout; everything else (warnings, errors) goes to stderr. SIGTERM or SIGINT
// ends it cleanly. Every start generates its own RSA signing key (ID tokens are RS256), so a second
// instance on another port is a "rogue" provider: same users, different issuer, different keys.
// (oidc-provider's built-in fallback keystore is the same fixed key set in every process, so it is
// not used.)
//
// The authorization code flow requires PKCE with S256 (plain is not supported); response modes
// query, fragment and form_post are all offered.
//
// Test users (any password is accepted; an unknown account id is refused on the login page):
//   alice    alice@example.com   (verified)  name "Alice Example"    groups ["eng", "admins"]
//   bob      bob@example.com     (verified)  name "Bob Example"      groups ["ops"]
//   mallory  mallory@evil.test   (verified)  name "Mallory Outsider" groups []
// The subject (sub) of each user is its account id. Scopes and the claims they release, all of
// which are put in the ID token itself (conformIdTokenClaims: false) as well as served by userinfo:
//   openid: sub   profile: name, preferred_username (= account id)   email: email, email_verified
//   groups: groups
//
// ID tokens can be made to misbehave for tests of the relying party's checks: POST /test/id-token-mode
// with "tamper" (signature broken), "foreign-issuer" (another iss, validly signed) or "normal".
//
// The interaction pages are this script's own (plain HTML, no scripts, nothing loaded from
// elsewhere); every element id starts with "idp-", so that none is taken for one of the relying
// party's own pages. A headless browser drives them so:
//   Login page (title "Sign-in"):     fill #idp-login (the account id, input name "login") and
//                                     #idp-password (anything, input name "password"), then click
//                                     #idp-sign-in (button text "Sign-in"). An unknown account id
//                                     re-renders the page (HTTP 401) with #idp-login-error
//                                     ("Unknown account: <id>"). #idp-cancel ("Cancel") aborts.
//   Consent page (title "Authorize"): click #idp-consent-allow (button text "Allow"); #idp-consent-deny
//                                     ("Deny") instead sends the relying party error=access_denied, as
//                                     #idp-cancel does. #idp-account-id shows who signed in, #idp-scopes
//                                     lists the scopes asked for.
//   RP-initiated logout (title "Sign-out"): click #idp-logout-confirm ("Yes, sign me out").
//   Error pages (title "Error"):      #idp-error holds the OAuth error code, #idp-error-description
//                                     its description.
// Within one browser context the provider keeps a session (cookie _session_<port>): once signed in,
// a later authorization request of the same client completes at once, with neither login nor
// consent page (unless the relying party sends prompt=login). Use a fresh browser context to sign in
// as another user.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const users = new Map([
  ['alice', { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['eng', 'admins'] }],
  ['bob', { email: 'bob@example.com', email_verified: true, name: 'Bob Example', groups: ['ops'] }],
  ['mallory', { email: 'mallory@evil.test', email_verified: true, name: 'Mallory Outsider', groups: [] }],
]);

const maximumFormBodyBytes = 64 * 1024;

function readOptions() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      client: { type: 'string', multiple: true, default: [] },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be an integer from 0 to 65535, not "${values.port}"`);
  }
  if (values.client.length === 0) {
    throw new Error('at least one --client <json> is required');
  }
  const clients = values.client.map((json) => {
    const client = JSON.parse(json);
    for (const required of ['client_id', 'client_secret', 'redirect_uris']) {
      if (client[required] === undefined) throw new Error(`--client ${json} lacks ${required}`);
    }
    return client;
  });
  return { port, clients };
}

// A fresh RSA key for each process: tokens of one instance never verify against another's keys.
let signingKey; // the private key ID tokens are signed with (a misbehaving token is re-signed with it)
const signingKid = `k-${crypto.randomBytes(6).toString('hex')}`;

function generateSigningKeys() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  signingKey = privateKey;
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: signingKid, use: 'sig', alg: 'RS256' }] };
}

// How the token endpoint treats the ID tokens it returns (POST /test/id-token-mode with one of these
// as the body; test scaffolding only, on loopback):
//   normal          as issued
//   tamper          the payload's email is changed after signing: the signature no longer verifies
//   foreign-issuer  iss is another issuer's, correctly signed with this provider's key
let idTokenMode = 'normal';
const idTokenModes = ['normal', 'tamper', 'foreign-issuer'];

function base64urlJson(value) {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function misbehave(idToken) {
  const [header, payload, signature] = idToken.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  if (idTokenMode === 'tamper') {
    return `${header}.${base64urlJson({ ...claims, email: 'admin@example.com' })}.${signature}`;
  }
  const body = `${header}.${base64urlJson({ ...claims, iss: 'http://127.0.0.1:9/another-issuer' })}`;
  const signed = crypto.sign('sha256', Buffer.from(body), signingKey).toString('base64url');
  return `${body}.${signed}`;
}

function findAccount(ctx, accountId) {
  const user = users.get(accountId);
  if (user === undefined) return undefined;
  return {
    accountId,
    async claims() {
      return { sub: accountId, preferred_username: accountId, ...user };
    },
  };
}

function escapeHtml(value) {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>`;
}

function errorPage(out) {
  return page('Error', `<p id="idp-error">${escapeHtml(out.error ?? 'server_error')}</p>
<p id="idp-error-description">${escapeHtml(out.error_description ?? '')}</p>`);
}

function loginPage(uid, clientId, { login = '', error } = {}) {
  const errorLine = error === undefined ? '' : `<p id="idp-login-error" role="alert">${escapeHtml(error)}</p>\n`;
  return page('Sign-in', `<p>Sign in to <strong id="idp-client-id">${escapeHtml(clientId)}</strong>.</p>
${errorLine}<form id="idp-login-form" method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label for="idp-login">Account</label> <input id="idp-login" name="login" type="text" required autofocus value="${escapeHtml(login)}">
  <label for="idp-password">Password</label> <input id="idp-password" name="password" type="password">
  <button id="idp-sign-in" type="submit">Sign-in</button>
</form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button id="idp-cancel" type="submit">Cancel</button></form>`);
}

function consentPage(uid, clientId, accountId, details) {
  const scopes = (details.missingOIDCScope ?? []).map((scope) => `<li>${escapeHtml(scope)}</li>`).join('');
  return page('Authorize', `<p><strong id="idp-client-id">${escapeHtml(clientId)}</strong> asks
<strong id="idp-account-id">${escapeHtml(accountId)}</strong> for:</p>
<ul id="idp-scopes">${scopes}</ul>
<form method="post" action="/interaction/${escapeHtml(uid)}/consent"><button id="idp-consent-allow" type="submit">Allow</button></form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button id="idp-consent-deny" type="submit">Deny</button></form>`);
}

// An OAuth error (oidc-provider's errors carry error and error_description) in one line; any other
// error with its stack, as it is a fault of this script or of oidc-provider.
function describeError(error) {
  if (error.error !== undefined) return `${error.error}${error.error_description ? ` (${error.error_description})` : ''}`;
  return error.stack ?? String(error);
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(html),
  });
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let length = 0;
  for await (const chunk of req) {
    length += chunk.length;
    if (length > maximumFormBodyBytes) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The interaction endpoints: GET /interaction/<uid> shows the login or the consent page,
// POST /interaction/<uid>/login|consent|abort completes it and sends the browser back to oidc-provider.
async function handleInteraction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    sendHtml(res, 400, errorPage({ error: 'invalid_request', error_description: 'interaction does not match this browser session' }));
    return;
  }
  const { prompt, params, session } = details;
  const clientId = params.client_id;

  if (action === undefined && req.method === 'GET') {
    if (prompt.name === 'login') sendHtml(res, 200, loginPage(uid, clientId));
    else if (prompt.name === 'consent') sendHtml(res, 200, consentPage(uid, clientId, session.accountId, prompt.details));
    else sendHtml(res, 501, errorPage({ error: 'server_error', error_description: `prompt ${prompt.name} is not implemented` }));
    return;
  }
  if (req.method !== 'POST') {
    sendHtml(res, 405, errorPage({ error: 'invalid_request', error_description: 'method not allowed' }));
    return;
  }

  if (action === 'login' && prompt.name === 'login') {
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    if (!users.has(login)) {
      sendHtml(res, 401, loginPage(uid, clientId, { login, error: `Unknown account: ${login}` }));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  } else if (action === 'consent' && prompt.name === 'consent') {
    const grant = details.grantId !== undefined
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    if (prompt.details.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  } else if (action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User aborted interaction' },
      { mergeWithLastSubmission: false },
    );
  } else {
    sendHtml(res, 400, errorPage({ error: 'invalid_request', error_description: `cannot ${action} during the ${prompt.name} prompt` }));
  }
}

function createProvider(issuer, port, clients) {
  const provider = new Provider(issuer, {
    clients,
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    pkce: { required: () => true },
    jwks: generateSigningKeys(),
    findAccount,
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false,
    // Plain http on loopback: the cookies are never Secure (oidc-provider marks them Secure only on
    // https), SameSite=Lax suffices as the provider's pages are reached by top-level navigation, and
    // fresh keys per process sign them. Cookies do not tell ports apart, so their names carry the
    // port: a browser that visits two providers (one a rogue) keeps a session with each.
    cookies: {
      names: { session: `_session_${port}`, interaction: `_interaction_${port}`, resume: `_interaction_resume_${port}` },
      keys: [crypto.randomBytes(32).toString('base64url')],
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx, form) => {
          ctx.type = 'html';
          ctx.body = page('Sign-out', `${form}
<button id="idp-logout-confirm" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="idp-logout-cancel" type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        postLogoutSuccessSource: (ctx) => {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<p id="idp-signed-out">You are signed out.</p>');
        },
      },
    },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = errorPage(out);
    },
    ttl: {
      AccessToken: 60 * 60,
      AuthorizationCode: 60,
      IdToken: 60 * 60,
      Interaction: 60 * 60,
      Session: 60 * 60,
      Grant: 60 * 60,
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.status === 200 && idTokenMode !== 'normal' && typeof ctx.body?.id_token === 'string') {
      ctx.body = { ...ctx.body, id_token: misbehave(ctx.body.id_token) };
    }
  });
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error', 'end_session.error']) {
    provider.on(event, (ctx, error) => console.error(`${event}: ${describeError(error)}`));
  }
  return provider;
}

async function main() {
  const { port, clients } = readOptions();
  let handle = (req, res) => sendHtml(res, 503, errorPage({ error: 'temporarily_unavailable', error_description: 'starting' }));
  const server = http.createServer((req, res) => handle(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  server.on('error', (error) => console.error(`server error: ${error.message}`));

  const { port: boundPort } = server.address();
  const issuer = `http://127.0.0.1:${boundPort}`;
  const provider = createProvider(issuer, boundPort, clients);
  // Static clients are checked when first looked up; look each up now so a bad one fails the start.
  for (const client of clients) await provider.Client.find(client.client_id);
  const providerHandler = provider.callback();

  handle = (req, res) => {
    if (req.url === '/test/id-token-mode' && req.method === 'POST') {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        if (!idTokenModes.includes(body.trim())) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end(`mode must be one of ${idTokenModes.join(', ')}`);
          return;
        }
        idTokenMode = body.trim();
        res.writeHead(204).end();
      });
      return;
    }
    const match = /^\/interaction\/([^/]+)(?:\/(login|consent|abort))?$/.exec(new URL(req.url, issuer).pathname);
    if (match === null) {
      providerHandler(req, res);
      return;
    }
    handleInteraction(provider, req, res, match[1], match[2]).catch((error) => {
      console.error(`interaction error: ${describeError(error)}`);
      if (!res.headersSent) {
        sendHtml(res, error.statusCode ?? 500, errorPage({ error: error.error ?? 'server_error', error_description: error.error_description ?? error.message }));
      }
    });
  };

  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  process.stdout.write(`ready ${issuer}\n`);
}

main().catch((error) => {
  console.error(`oidc test provider failed to start: ${describeError(error)}`);
  process.exit(1);
});
