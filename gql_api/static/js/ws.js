// A small graphql-transport-ws client over the browser's WebSocket
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md).
//
// - `connection_init` carries `{Authorization: "Bearer <access token>"}`, asked for at every connect;
// - every subscription is sent again after a reconnect;
// - a dropped connection is retried with exponential backoff and jitter (0.5 s doubling up to 15 s),
//   and every change of state is reported through `onStatus`, so the page can say so;
// - close 4403 (token refused or expired on the open socket) asks `onForbidden` (refresh the
//   token) before reconnecting; a connection that answers no ping within 10 s is dropped.

const PROTOCOL = "graphql-transport-ws";
const ACK_TIMEOUT_MS = 10_000;
const PING_EVERY_MS = 20_000;
const PONG_TIMEOUT_MS = 10_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export class LiveSocket {
  /**
   * @param {string} url ws:// or wss:// URL of /graphql
   * @param {{connectionParams: () => Promise<object>, onStatus?: (s: object) => void,
   *          onForbidden?: () => Promise<void>}} options
   */
  constructor(url, { connectionParams, onStatus = () => {}, onForbidden = async () => {} }) {
    this.url = url;
    this.connectionParams = connectionParams;
    this.onStatus = onStatus;
    this.onForbidden = onForbidden;
    this.ops = new Map(); // id -> {payload, sink}
    this.nextId = 1;
    this.ws = null;
    this.acked = false;
    this.attempt = 0;
    this.stopped = true;
    this.timers = {};
    this.status = { state: "offline" };
  }

  setStatus(status) {
    this.status = status;
    this.onStatus(status);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  /** Close the connection and forget every subscription (e.g. at logout). */
  stop() {
    this.stopped = true;
    this.clearTimers();
    this.detach(1000, "Bye");
    this.ops.clear();
    this.setStatus({ state: "offline" });
  }

  /** Reconnect now (e.g. with a new access token), keeping the subscriptions. */
  restart() {
    if (this.stopped) return;
    this.clearTimers();
    this.detach(1000, "Reconnecting");
    this.attempt = 0;
    this.connect();
  }

  clearTimers() {
    for (const key of Object.keys(this.timers)) window.clearTimeout(this.timers[key]);
    this.timers = {};
  }

  /** Subscribe; returns a function that stops the subscription. sink: {next(payload), error(errors)} */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    const payload = { query, variables };
    this.ops.set(id, { payload, sink });
    if (this.acked) this.send({ id, type: "subscribe", payload });
    return () => {
      if (this.ops.delete(id) && this.acked) this.send({ id, type: "complete" });
    };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  /** Forget the current socket (its late events are ignored) and close it. */
  detach(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.acked = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  connect() {
    if (this.stopped) return;
    window.clearTimeout(this.timers.retry);
    this.detach(1000, "Replaced");
    this.setStatus({ state: "connecting", attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url, PROTOCOL);
    } catch (e) {
      this.dropped(1006, String(e));
      return;
    }
    this.ws = ws;
    ws.onopen = async () => {
      let payload = {};
      try {
        payload = await this.connectionParams();
      } catch {
        payload = {}; // logged out meanwhile: an anonymous connection (prices only)
      }
      if (this.ws !== ws) return;
      this.send({ type: "connection_init", payload });
      this.timers.ack = window.setTimeout(() => this.dropped(4408, "No connection_ack"), ACK_TIMEOUT_MS);
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => this.dropped(event.code, event.reason);
  }

  receive(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    const op = message.id !== undefined ? this.ops.get(message.id) : undefined;
    switch (message.type) {
      case "connection_ack":
        window.clearTimeout(this.timers.ack);
        this.acked = true;
        this.attempt = 0;
        this.setStatus({ state: "live" });
        for (const [id, { payload }] of this.ops) this.send({ id, type: "subscribe", payload });
        this.keepAlive();
        break;
      case "next":
        if (op) op.sink.next(message.payload);
        break;
      case "error":
        if (op) {
          this.ops.delete(message.id);
          if (op.sink.error) op.sink.error(message.payload);
        }
        break;
      case "complete":
        if (op) {
          this.ops.delete(message.id);
          if (op.sink.complete) op.sink.complete();
        }
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "pong":
        window.clearTimeout(this.timers.pong);
        break;
      default:
        break;
    }
  }

  keepAlive() {
    window.clearTimeout(this.timers.ping);
    this.timers.ping = window.setTimeout(() => {
      this.send({ type: "ping" });
      this.timers.pong = window.setTimeout(() => this.dropped(4499, "No pong"), PONG_TIMEOUT_MS);
      this.keepAlive();
    }, PING_EVERY_MS);
  }

  async dropped(code, reason) {
    this.clearTimers();
    this.detach(1000, "Dropped");
    if (this.stopped) return;
    if (code === 4403) {
      // The token was refused or expired on the open socket: refresh it, then reconnect.
      try {
        await this.onForbidden();
      } catch {
        /* logged out: the page shows the login form; keep retrying anonymously meanwhile */
      }
      if (this.stopped || this.ws) return; // reconnected meanwhile (restart() after the refresh)
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.setStatus({ state: "reconnecting", attempt: this.attempt, retryAt: Date.now() + delay, code, reason });
    this.timers.retry = window.setTimeout(() => this.connect(), delay);
  }
}
