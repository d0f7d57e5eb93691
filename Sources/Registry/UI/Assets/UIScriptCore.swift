/// The UI's script, first part: calls to the registry (with the session's token), error words,
/// routing by the URL's fragment, and the token prompt.
enum UIScript {
    static let core = #"""
'use strict';
const TOKEN_KEY = 'trellis.token';
const main = document.getElementById('main');
const banner = document.getElementById('banner');
const who = document.getElementById('who');
const app = { acl: 'unknown', tokenInfo: null, page: null };

function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
function enc(value) { return encodeURIComponent(value); }
function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
function sleep(ms, signal) {
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** A failed call: status 0 when the registry could not be reached. */
class ApiError extends Error {
  constructor(status, text) { super(text); this.status = status; }
}

/** One call to the registry, with the session's token; throws ApiError on a failure. */
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers['X-Consul-Token'] = token();
  let response;
  try {
    response = await fetch(path, { method: options.method || 'GET', headers, body: options.body, signal: options.signal, cache: 'no-store' });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    showBanner('The registry at ' + location.host + ' is unreachable. Retrying…');
    throw new ApiError(0, 'the registry is unreachable');
  }
  hideBanner();
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, text.trim() || response.statusText);
  return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) };
}

function showBanner(text) { banner.textContent = text; banner.hidden = false; }
function hideBanner() { banner.hidden = true; }

/** What went wrong, in words a person can act on. */
function describe(error) {
  if (!(error instanceof ApiError)) return 'Something went wrong in this page: ' + error.message;
  if (error.status === 0) return 'The registry is unreachable: check that it runs at ' + location.host + '.';
  if (error.status === 403 && /ACL not found/.test(error.message)) return 'Your token was refused: the registry knows no such token. Log in again.';
  if (error.status === 403) return 'Your token does not allow this: ' + error.message;
  if (error.status === 503 || error.status === 502) return error.message;
  return 'The registry answered ' + error.status + ': ' + error.message;
}
function errorBox(error) {
  const login = error instanceof ApiError && error.status === 403 && app.acl === 'on' ? ' <a href="#/login">Use another token</a>' : '';
  return '<div class="error" role="alert">' + esc(describe(error)) + login + '</div>';
}

/** Long-polls `path` (a blocking query) until `signal` aborts, calling `render` with each new answer. */
async function watch(path, signal, render, onError) {
  let index = 0;
  while (!signal.aborted) {
    try {
      const separator = path.includes('?') ? '&' : '?';
      const answer = await api(path + (index ? separator + 'index=' + index + '&wait=30s' : ''), { signal });
      const next = Number(answer.headers.get('X-Consul-Index') || 0);
      if (signal.aborted) return;
      if (next !== index || index === 0) render(answer);
      index = next < index ? 0 : next;
    } catch (error) {
      if (error.name === 'AbortError' || signal.aborted) return;
      (onError || (() => {}))(error);
      index = 0;
      await sleep(2000, signal);
    }
  }
}

/** Repeats `step` every `ms` until `signal` aborts. */
async function every(ms, signal, step) {
  while (!signal.aborted) {
    try { await step(); } catch (error) { if (error.name === 'AbortError') return; }
    await sleep(ms, signal);
  }
}

const routes = [];
function route(pattern, section, view) { routes.push({ pattern, section, view }); }

function navigate() {
  if (app.page) app.page.abort();
  app.page = new AbortController();
  const hash = location.hash || '#/services';
  const found = routes.map(r => ({ r, m: hash.match(r.pattern) })).find(x => x.m);
  document.querySelectorAll('header nav a').forEach(a => {
    if (found && a.dataset.section === found.r.section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  if (!found) { main.innerHTML = '<h1>Not found</h1><p>No page at ' + esc(hash) + '. <a href="#/services">Services</a></p>'; return; }
  if (app.acl === 'on' && !token() && found.r.section !== 'login') {
    loginView(hash);
    return;
  }
  const args = found.m.slice(1).map(part => decodeURIComponent(part || ''));
  const signal = app.page.signal;
  Promise.resolve(found.r.view(signal, ...args)).catch(error => {
    // A page left behind may still finish its work: it must not write over the page shown now.
    if (error.name !== 'AbortError' && !signal.aborted) main.innerHTML = errorBox(error);
  });
  if (document.activeElement && document.activeElement.closest && !document.activeElement.closest('main')) main.focus({ preventScroll: true });
}

/** Learns whether ACLs are on and who the session's token is. */
async function learnIdentity() {
  try {
    const self = (await api('/v1/acl/token/self')).json();
    app.acl = 'on';
    app.tokenInfo = self;
  } catch (error) {
    if (error.status === 401) app.acl = 'off';
    else if (error.status === 403) { app.acl = 'on'; app.tokenInfo = null; if (token()) sessionStorage.removeItem(TOKEN_KEY); }
    else app.acl = 'unknown';
  }
  renderWho();
}

function renderWho() {
  if (app.acl !== 'on') { who.textContent = app.acl === 'off' ? 'ACLs off' : ''; return; }
  if (!app.tokenInfo) { who.innerHTML = '<a href="#/login">Log in</a>'; return; }
  const name = app.tokenInfo.Description || app.tokenInfo.AccessorID.slice(0, 8);
  who.innerHTML = '<span>Token: ' + esc(name) + '</span><button type="button" id="logout">Log out</button>';
  document.getElementById('logout').onclick = () => {
    sessionStorage.removeItem(TOKEN_KEY);
    app.tokenInfo = null;
    renderWho();
    location.hash = '#/login';
  };
}

function loginView(returnTo) {
  main.innerHTML = '<h1>Log in</h1><p>This registry runs with ACLs. Paste a token\'s SecretID; it stays in this browser tab only ' +
    '(session storage) and is sent to the registry with each request.</p>' +
    '<form class="stack" id="login"><label>Token SecretID<input type="password" id="secret" autocomplete="off" required></label>' +
    '<div><button class="primary" type="submit">Log in</button></div></form><div id="loginResult"></div>';
  const secret = document.getElementById('secret');
  secret.focus();
  document.getElementById('login').onsubmit = async event => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, secret.value.trim());
    try {
      app.tokenInfo = (await api('/v1/acl/token/self')).json();
      renderWho();
      location.hash = returnTo && returnTo !== '#/login' ? returnTo : '#/services';
      navigate();
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById('loginResult').innerHTML = errorBox(error.status === 403 ? new ApiError(403, 'ACL not found') : error);
    }
  };
}
route(/^#\/login$/, 'login', () => loginView(''));

function formatRate(value) { return value == null ? '…' : value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(2); }
function formatRatio(value) { return value == null ? '…' : (value * 100).toFixed(value > 0 && value < 0.01 ? 2 : 1) + ' %'; }
function formatSeconds(value) { return value == null ? '…' : value < 1 ? (value * 1000).toFixed(value < 0.01 ? 2 : 1) + ' ms' : value.toFixed(2) + ' s'; }
function statusClass(status) { return ['passing', 'warning', 'critical'].includes(status) ? status : 'critical'; }
function worst(statuses) {
  return statuses.includes('critical') || statuses.includes('maintenance') ? 'critical' : statuses.includes('warning') ? 'warning' : 'passing';
}

window.addEventListener('hashchange', navigate);
window.addEventListener('DOMContentLoaded', async () => { await learnIdentity(); navigate(); });
"""#
}
