// GraphQL over HTTP, and the session: tokens from `login`, kept in sessionStorage (this tab only),
// refreshed a minute before the access token expires, and once more when a request finds it expired.

const STORAGE_KEY = "criptoren.session";
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(message, code = "ERROR", details = {}, path = null) {
    super(message);
    this.code = code;
    this.details = details || {};
    this.path = path;
  }

  static from(error) {
    const ext = (error && error.extensions) || {};
    return new ApiError(error?.message || "Request failed", ext.code || "ERROR", ext.details || {}, error?.path);
  }
}

const AUTH_FIELDS = "accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt clientId";
const LOGIN = `mutation Login($k: String!, $s: String!) { login(apiKey: $k, apiSecret: $s) { ${AUTH_FIELDS} } }`;
const REFRESH = `mutation Refresh($t: String!) { refreshToken(token: $t) { ${AUTH_FIELDS} } }`;
const LOGOUT = "mutation Logout($t: String!) { logout(refreshToken: $t) }";

function load() {
  try {
    const tokens = JSON.parse(window.sessionStorage.getItem(STORAGE_KEY) || "null");
    return tokens && tokens.accessToken && tokens.refreshToken ? tokens : null;
  } catch {
    return null;
  }
}

export class Session {
  constructor(endpoint = "/graphql") {
    this.endpoint = endpoint;
    this.tokens = load();
    this.listeners = new Set();
    this.refreshing = null;
    this.timer = null;
    this.schedule();
  }

  get loggedIn() {
    return this.tokens !== null;
  }

  /** fn(kind) with kind "login", "refresh" or "logout". */
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(kind) {
    for (const fn of this.listeners) fn(kind);
  }

  store(tokens) {
    this.tokens = tokens;
    if (tokens) window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify(tokens));
    else window.sessionStorage.removeItem(STORAGE_KEY);
    this.schedule();
  }

  schedule() {
    window.clearTimeout(this.timer);
    if (!this.tokens) return;
    const due = Date.parse(this.tokens.accessTokenExpiresAt) - Date.now() - REFRESH_MARGIN_MS;
    this.timer = window.setTimeout(() => this.refresh().catch(() => {}), Math.max(1_000, due));
  }

  async post(query, variables, token) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(this.endpoint, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
    } catch (e) {
      throw new ApiError(`The server cannot be reached (${e.message}).`, "NETWORK");
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`The server answered ${response.status} without a GraphQL body.`, "HTTP");
    }
    return body;
  }

  /** The data of an operation; its first error as an ApiError. */
  async request(query, variables = {}, { auth = true } = {}) {
    const token = auth ? await this.accessToken() : null;
    let body = await this.post(query, variables, token);
    if (auth && body.errors && body.errors.some((e) => e.extensions?.code === "UNAUTHENTICATED")) {
      await this.refresh(); // expired meanwhile (a sleeping laptop): refresh once and retry
      body = await this.post(query, variables, this.tokens?.accessToken);
    }
    if (body.errors && body.errors.length) throw ApiError.from(body.errors[0]);
    return body.data;
  }

  /** A file the API serves to the logged-in client (e.g. /export/trades.csv): its Blob and file name. */
  async download(path) {
    const get = async () => {
      try {
        return await fetch(path, { headers: { Authorization: `Bearer ${await this.accessToken()}` } });
      } catch (e) {
        throw new ApiError(`The server cannot be reached (${e.message}).`, "NETWORK");
      }
    };
    let response = await get();
    if (response.status === 401) {
      await this.refresh(); // expired meanwhile: refresh once and retry
      response = await get();
    }
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      if (body?.errors?.length) throw ApiError.from(body.errors[0]);
      throw new ApiError(`The server answered ${response.status}.`, "HTTP");
    }
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = /filename="([^"]+)"/.exec(disposition)?.[1] || "export.csv";
    return { blob: await response.blob(), name };
  }

  /** A valid access token, refreshed first when it is about to expire. */
  async accessToken() {
    if (!this.tokens) throw new ApiError("Log in first.", "UNAUTHENTICATED");
    if (Date.parse(this.tokens.accessTokenExpiresAt) - Date.now() < REFRESH_MARGIN_MS / 2) await this.refresh();
    return this.tokens.accessToken;
  }

  async login(apiKey, apiSecret) {
    const data = await this.request(LOGIN, { k: apiKey, s: apiSecret }, { auth: false });
    this.store(data.login);
    this.emit("login");
    return data.login;
  }

  /** Trade the refresh token for new tokens (one refresh at a time); a refused one logs out. */
  refresh() {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        const current = this.tokens;
        if (!current) throw new ApiError("Log in first.", "UNAUTHENTICATED");
        const body = await this.post(REFRESH, { t: current.refreshToken }, null);
        if (body.errors && body.errors.length) {
          const error = ApiError.from(body.errors[0]);
          if (error.code === "UNAUTHENTICATED") this.logout(false);
          throw error;
        }
        this.store(body.data.refreshToken);
        this.emit("refresh");
        return this.tokens;
      })().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  logout(tellServer = true) {
    const tokens = this.tokens;
    this.store(null);
    if (tellServer && tokens) this.post(LOGOUT, { t: tokens.refreshToken }, tokens.accessToken).catch(() => {});
    this.emit("logout");
  }
}
