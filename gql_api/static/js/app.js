// Criptoren's dashboard: strategies, a live channel chart, positions, scheduled sells, capital, the
// emergency stop, the trade export (CSV) and backtests, over the GraphQL API (HTTP for queries and
// mutations, WebSocket subscriptions for prices, fills and position events). Plain ES modules, no
// build step.
//
// Server data reaches the page as text nodes only (never as HTML). Money arrives as decimal strings;
// the page shows them as they are and uses floating point only for display arithmetic
// (unrealised results, chart coordinates), never for anything sent back.

import { initAlerts } from "./alerts.js";
import { ApiError, Session } from "./api.js";
import { LiveChart, drawBacktest, formatMoney, formatPrice } from "./chart.js";
import { LiveSocket } from "./ws.js";

const CHART_POINTS = 2000; // the live chart keeps the last 2,000 prices (see chart.js)
const HISTORY_CANDLES = CHART_POINTS / 4; // 1-minute candles of history, four points each (pushCandle)
const EVENTS_KEPT = 50;
const POLL_MS = 15_000;

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

const features = new Set(($('meta[name="criptoren-features"]')?.content || "").split(",").filter(Boolean));

// GraphiQL's files may be missing (no npm when the server was set up): say so on the link itself.
if (!features.has("graphiql")) {
  const link = $('a[href="/graphql"]');
  if (link) {
    link.textContent = "GraphiQL (not installed)";
    link.classList.add("warn");
    link.title = "GraphiQL's files are not installed on this server: the page says how to install them.";
  }
}

/** A DOM element; strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("data-")) el.dataset[key.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value;
    else if (key === "onclick") el.addEventListener("click", value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const STATES = {
  ARMED: ["armed", "ok"],
  WAITING_FOR_BASE: ["waiting for base", "wait"],
  CHANNEL_BROKEN: ["channel broken", "bad"],
  PAUSED: ["paused", "off"],
  NEEDS_CAPITAL: ["needs capital", "wait"],
  ARCHIVED: ["archived", "off"],
};

// An active strategy with no principal cannot enter (rule 2): say so rather than "armed".
function displayedState(s) {
  const principal = Number(s.balance?.principal ?? 0);
  if (principal <= 0 && (s.state === "ARMED" || s.state === "WAITING_FOR_BASE")) return "NEEDS_CAPITAL";
  return s.state;
}

const POSITION_FIELDS = `id status entryPrice quantity cost minProfit minSellPrice scheduledExitPrice channelExitDate
  createdAt strategyId symbol { symbol }`;
const PAUSED_FIELD = features.has("tradingPausedAt") ? "me { tradingPausedAt }" : "";
const DASHBOARD = `query Dashboard {
  ${PAUSED_FIELD}
  strategies(first: 100) { nodes { id name state isActive isArmed channelBrokenAt basePrice topPrice capitalPercentage
    buyThreshold sellThreshold minProfit timeframe symbol { symbol quoteAsset } levels { base entry exit top }
    balance { principal } } }
  open: positions(status: OPEN, first: 100) { nodes { ${POSITION_FIELDS} } }
  scheduledSells(first: 100) { nodes { ${POSITION_FIELDS} } }
  capitalBalances { asset principal committed free profit total }
}`;
const SELECTED = `query Selected($id: ID!, $symbol: String!) {
  strategy(id: $id) { events(first: 50) { nodes { id type message createdAt strategyId data } } }
  trades(strategyId: $id, first: 50) { nodes { side price executedAt } }
  priceHistory(symbol: $symbol, interval: "1m", limit: ${HISTORY_CANDLES}) { closeTime open high low close }
  currentPrice(symbol: $symbol) { price at }
}`;
const STRATEGY_FIELDS = "id name state symbol { symbol }";
const PRICES = "subscription Prices($symbols: [String!]!) { prices(symbols: $symbols) { symbol price at } }";
const FILLS = `subscription Fills { fills { id side price quantity notes executedAt strategyId positionId
  symbol { symbol } } }`;
const EVENTS = "subscription Events { positionEvents { id type message strategyId positionId data createdAt } }";

// ------------------------------------------------------------------------------------------ state

const session = new Session("/graphql");
const state = {
  me: null,
  symbols: [],
  strategies: [],
  selectedId: null,
  open: [],
  scheduled: [],
  capital: null,
  prices: new Map(), // symbol -> last price (number)
  editingId: null, // strategy being edited; null: a new one
  events: [],
  chartReady: false,
  pendingTicks: [],
  subscribedSymbols: "",
  stopPrices: null,
  paused: false,
  confirmArchive: null, // the strategy whose Archive button waits for its confirming click
};
let chart = null;
let pollTimer = null;
let refreshTimer = null;
let statusTimer = null;
let lastBacktest = null;

const socket = new LiveSocket(`${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}/graphql`, {
  connectionParams: async () => (session.loggedIn ? { Authorization: `Bearer ${await session.accessToken()}` } : {}),
  onStatus: showStatus,
  onForbidden: () => session.refresh(),
});

// ------------------------------------------------------------------------------- small helpers

function banner(message, kind = "error") {
  const el = $("#banner");
  el.textContent = message || "";
  el.className = `banner ${kind}`;
  el.hidden = !message;
}

function strategyName(id) {
  return state.strategies.find((s) => s.id === id)?.name ?? `#${id}`;
}

function selected() {
  return state.strategies.find((s) => s.id === state.selectedId) || null;
}

function shortTime(iso) {
  return iso ? iso.replace("T", " ").slice(0, 19) : "";
}

/** The result of selling at `price` now, after the sell fee: C·((1 + m/100)·price/minSell − 1),
 * since minSell = C·(1 + m/100) / (Q·(1 − f)) (SPEC rule 3). */
function unrealised(position, price) {
  if (price === undefined || price === null) return null;
  const cost = Number(position.cost);
  return cost * (((1 + Number(position.minProfit) / 100) * price) / Number(position.minSellPrice) - 1);
}

function signed(value) {
  if (value === null) return h("span", { class: "muted" }, "—");
  return h("span", { class: value >= 0 ? "pos" : "neg" }, `${value >= 0 ? "+" : ""}${formatMoney(value)}`);
}

// After the socket was lost, what happened meanwhile is read again: the fills and events the live
// subscriptions could not deliver while it was down are drawn from the stored trades, no marker lost.
let wasLost = false;

function showStatus(status) {
  const el = $("#conn-status");
  window.clearInterval(statusTimer);
  if (status.state === "reconnecting") wasLost = true;
  if (status.state === "live" && wasLost) {
    wasLost = false;
    if (session.loggedIn && state.selectedId) {
      refreshSoon();
      selectStrategy(state.selectedId);
    }
  }
  const render = () => {
    if (status.state === "live") {
      el.textContent = "● live";
    } else if (status.state === "connecting") {
      el.textContent = status.attempt ? `reconnecting (attempt ${status.attempt + 1})…` : "connecting…";
    } else if (status.state === "reconnecting") {
      const seconds = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
      el.textContent = `connection lost: reconnecting in ${seconds} s (attempt ${status.attempt})`;
    } else {
      el.textContent = "offline";
    }
  };
  el.className = `status ${status.state}`;
  el.dataset.state = status.state;
  render();
  if (status.state === "reconnecting") statusTimer = window.setInterval(render, 500);
}

async function run(action, errorTarget = null) {
  try {
    return await action();
  } catch (e) {
    const message = e instanceof ApiError ? e.message : String(e);
    if (errorTarget) errorTarget.textContent = message;
    else banner(message);
    return undefined;
  }
}

// ------------------------------------------------------------------------------------ rendering

function renderStrategies() {
  const rows = state.strategies.map((s) => {
    const shown = displayedState(s);
    const [label, tone] = STATES[shown] || [shown.toLowerCase(), "off"];
    const fund =
      shown === "NEEDS_CAPITAL"
        ? h(
            "form",
            { class: "row-fund", "data-id": s.id },
            h("input", { name: "amount", placeholder: "amount", inputmode: "decimal", "aria-label": "Amount to allocate" }),
            h("button", { type: "submit", class: "small" }, "Allocate"),
          )
        : null;
    return h(
      "tr",
      { "data-id": s.id, class: s.id === state.selectedId ? "selected" : "" },
      h(
        "td",
        {},
        h("button", { type: "button", class: "link", "data-action": "select", "data-id": s.id }, s.name),
        h("span", { class: "sub" }, `${s.symbol.symbol} · ${s.timeframe}`),
      ),
      h("td", {}, h("span", { class: `badge ${tone}`, "data-state": shown }, label), fund),
      h("td", { class: "num" }, formatPrice(s.basePrice)),
      h("td", { class: "num" }, formatPrice(s.topPrice)),
      h(
        "td",
        { class: "row-actions" },
        h("button", { type: "button", class: "small ghost", "data-action": "edit", "data-id": s.id }, "Edit"),
        h(
          "button",
          { type: "button", class: "small ghost", "data-action": s.isActive ? "pause" : "activate", "data-id": s.id },
          s.isActive ? "Pause" : "Activate",
        ),
        // A paused strategy can be retired (archiveStrategy), confirmed by a second click.
        s.isActive
          ? null
          : h(
              "button",
              {
                type: "button",
                class: state.confirmArchive === s.id ? "small danger" : "small ghost",
                "data-action": "archive",
                "data-id": s.id,
                title: "Retire it: it stops trading and leaves this list; its history is kept",
              },
              state.confirmArchive === s.id ? "Sure?" : "Archive",
            ),
      ),
    );
  });
  // Rows are rebuilt on every refresh: keep what the user is typing in an allocate field.
  const typing = new Map([...document.querySelectorAll("form.row-fund")].map((f) => [f.dataset.id, f.elements.amount.value]));
  const focused = document.activeElement?.closest?.("form.row-fund")?.dataset.id;
  $("#strategies tbody").replaceChildren(...rows);
  for (const form of document.querySelectorAll("form.row-fund")) {
    form.elements.amount.value = typing.get(form.dataset.id) ?? "";
    if (form.dataset.id === focused) form.elements.amount.focus();
  }
  const backtestSelect = $('#backtest-form select[name="strategyId"]');
  const current = backtestSelect.value;
  backtestSelect.replaceChildren(...state.strategies.map((s) => h("option", { value: s.id }, `${s.name} (${s.symbol.symbol})`)));
  if (current) backtestSelect.value = current;
}

function renderPositions() {
  const live = [...state.open, ...state.scheduled].sort((a, b) => Number(b.id) - Number(a.id));
  const rows = live.map((p) => {
    const price = state.prices.get(p.symbol.symbol);
    const action =
      p.status === "OPEN"
        ? h("button", { type: "button", class: "small ghost", "data-action": "schedule", "data-id": p.id }, "Schedule sell")
        : h("button", { type: "button", class: "small ghost", "data-action": "cancel-scheduled", "data-id": p.id }, "Cancel schedule");
    return h(
      "tr",
      { "data-id": p.id, "data-status": p.status },
      h("td", {}, p.id),
      h("td", {}, strategyName(p.strategyId)),
      h("td", {}, h("span", { class: `badge ${p.status === "OPEN" ? "ok" : "wait"}` }, p.status.toLowerCase())),
      h("td", { class: "num" }, formatPrice(p.entryPrice)),
      h("td", { class: "num" }, p.quantity),
      h("td", { class: "num" }, formatPrice(p.minSellPrice)),
      h("td", { class: "num unrealised", "data-id": p.id }, signed(unrealised(p, price))),
      h("td", { class: "row-actions" }, action),
    );
  });
  $("#positions tbody").replaceChildren(...rows);
  $('[data-empty-for="positions"]').hidden = rows.length > 0;

  const scheduled = state.scheduled.map((p) =>
    h(
      "tr",
      { "data-id": p.id },
      h("td", {}, p.id),
      h("td", {}, strategyName(p.strategyId)),
      h("td", { class: "num" }, formatPrice(p.scheduledExitPrice)),
      h("td", { class: "num" }, p.quantity),
      h("td", {}, shortTime(p.channelExitDate || p.createdAt)),
      h(
        "td",
        { class: "row-actions" },
        h("button", { type: "button", class: "small", "data-action": "cancel-scheduled", "data-id": p.id }, "Cancel"),
      ),
    ),
  );
  $("#scheduled tbody").replaceChildren(...scheduled);
  $('[data-empty-for="scheduled"]').hidden = scheduled.length > 0;
}

/** Only the unrealised cells change with the price (at most twice a second). */
let unrealisedDue = false;
function renderUnrealisedSoon() {
  if (unrealisedDue) return;
  unrealisedDue = true;
  window.setTimeout(() => {
    unrealisedDue = false;
    for (const p of [...state.open, ...state.scheduled]) {
      const cell = $(`#positions td.unrealised[data-id="${CSS.escape(p.id)}"]`);
      if (cell) cell.replaceChildren(signed(unrealised(p, state.prices.get(p.symbol.symbol))));
    }
  }, 500);
}

// Capital per quote asset (amounts in different assets are never added): the card shows the asset
// of the selected strategy (or the only one), and the others' totals below it.
function renderCapital() {
  const all = state.capitals || [];
  const asset = selected()?.symbol.quoteAsset;
  const shown = all.find((c) => c.asset === asset) || all[0] || null;
  for (const dd of $$("#capital dd")) dd.textContent = shown ? formatMoney(shown[dd.dataset.k]) : "—";
  $("#capital-asset").textContent = shown?.asset ? `· ${shown.asset}` : "";
  const others = all.filter((c) => c !== shown);
  $("#capital-other").hidden = !others.length;
  $("#capital-other").textContent = others.length
    ? `Also: ${others.map((c) => `${formatPrice(c.total)} ${c.asset} (free ${formatPrice(c.free)})`).join(", ")}`
    : "";
}

function renderEvents() {
  $("#events").replaceChildren(
    ...state.events.map((e) =>
      h("li", { "data-type": e.type }, h("time", {}, shortTime(e.createdAt)), " ", h("b", {}, strategyName(e.strategyId)), " ", e.message),
    ),
  );
}

function addEvent(event) {
  if (state.events.some((e) => e.id === event.id)) return;
  state.events.unshift(event);
  state.events.length = Math.min(state.events.length, EVENTS_KEPT);
  renderEvents();
}

let tickerDue = false;
function renderTickerSoon() {
  if (tickerDue) return;
  tickerDue = true;
  window.requestAnimationFrame(() => {
    tickerDue = false;
    const s = selected();
    const price = s ? state.prices.get(s.symbol.symbol) : undefined;
    $("#last-price").textContent = price === undefined ? "" : formatPrice(price);
  });
}

// -------------------------------------------------------------------------------------- loading

async function refresh() {
  const data = await session.request(DASHBOARD);
  state.strategies = data.strategies.nodes;
  state.open = data.open.nodes;
  state.scheduled = data.scheduledSells.nodes;
  state.capitals = data.capitalBalances;
  if (!state.strategies.some((s) => s.id === state.selectedId)) {
    state.selectedId = state.strategies[0]?.id ?? null;
    if (state.selectedId) selectStrategy(state.selectedId);
  }
  const s = selected();
  if (s && chart) chart.setLevels(s.levels);
  renderStrategies();
  renderPositions();
  renderCapital();
  subscribePrices();
  if (data.me) setPaused(Boolean(data.me.tradingPausedAt));
  if ($("#banner").classList.contains("error")) banner(""); // the request went through: clear its error
}

function refreshSoon() {
  window.clearTimeout(refreshTimer);
  refreshTimer = window.setTimeout(() => run(refresh), 250);
}

// History fills the chart's window at the resolution live ticks have: each 1-minute candle is drawn
// as the path the price took inside it (O→L→H→C rising, O→H→L→C falling — SPEC §4 rule 10), four
// points a candle, so a newly selected chart shows no coarse zig-zag of closes before the ticks.
function pushCandle(c) {
  const path = Number(c.close) >= Number(c.open) ? [c.open, c.low, c.high, c.close] : [c.open, c.high, c.low, c.close];
  const end = Date.parse(c.closeTime);
  path.forEach((price, k) => chart.push(price, end - 60e3 + ((k + 1) * 60e3) / path.length));
}

async function selectStrategy(id) {
  state.selectedId = id;
  const s = selected();
  if (!s) return;
  renderStrategies();
  renderCapital();
  $("#chart-title").textContent = `${s.name} · ${s.symbol.symbol}`;
  chart.reset(s.levels, `${s.symbol.symbol} · ${s.timeframe} channel`);
  state.chartReady = false;
  state.pendingTicks = [];
  const data = await run(() => session.request(SELECTED, { id, symbol: s.symbol.symbol }));
  if (state.selectedId !== id) return; // another one was selected meanwhile
  if (data) {
    for (const c of data.priceHistory) pushCandle(c);
    const quote = data.currentPrice;
    if (quote.price !== null && !state.pendingTicks.length) chart.push(quote.price, Date.parse(quote.at));
    for (const t of [...data.trades.nodes].reverse()) {
      chart.mark(t.side === "BUY" ? "buy" : "sell", t.price, t.side, Date.parse(t.executedAt));
    }
    // Schedules and breaks from the stored events (a newly selected strategy, or one whose live events
    // were missed while the socket was down).
    for (const e of [...data.strategy.events.nodes].reverse()) {
      if (e.type === "position_scheduled" && e.data?.scheduled_exit_price) {
        chart.mark("schedule", e.data.scheduled_exit_price, "scheduled", Date.parse(e.createdAt));
      } else if (e.type === "channel_broken" && e.data?.close) {
        chart.mark("broken", e.data.close, "channel broken", Date.parse(e.createdAt));
      }
    }
    state.events = data.strategy.events.nodes.slice(0, EVENTS_KEPT);
    renderEvents();
  }
  for (const tick of state.pendingTicks) chart.push(tick.price, tick.at);
  state.pendingTicks = [];
  state.chartReady = true;
  renderTickerSoon();
}

// --------------------------------------------------------------------------------- live updates

function onTick(tick) {
  const price = Number(tick.price);
  state.prices.set(tick.symbol, price);
  const s = selected();
  if (s && s.symbol.symbol === tick.symbol) {
    const at = Date.parse(tick.at);
    if (state.chartReady) chart.push(price, at);
    else if (state.pendingTicks.push({ price, at }) > CHART_POINTS) state.pendingTicks.shift();
    renderTickerSoon();
  }
  renderUnrealisedSoon();
}

function subscribePrices() {
  const symbols = [...new Set(state.strategies.map((s) => s.symbol.symbol))].sort().slice(0, 20);
  const key = symbols.join(",");
  if (key === state.subscribedSymbols) return;
  if (state.stopPrices) state.stopPrices();
  state.stopPrices = null;
  state.subscribedSymbols = key;
  if (!symbols.length) return;
  state.stopPrices = socket.subscribe(PRICES, { symbols }, {
    next: (payload) => payload.data && onTick(payload.data.prices),
    error: (errors) => banner(`Prices: ${errors[0]?.message}`),
  });
}

function onFill(fill) {
  if (fill.strategyId === state.selectedId) {
    chart.mark(fill.side === "BUY" ? "buy" : "sell", fill.price, `${fill.side} ${fill.quantity}`);
  }
  refreshSoon();
}

function onEvent(event) {
  addEvent(event);
  if (event.strategyId === state.selectedId) {
    if (event.type === "position_scheduled" && event.data?.scheduled_exit_price) {
      chart.mark("schedule", event.data.scheduled_exit_price, "scheduled");
    } else if (event.type === "channel_broken" && chart.lastPrice !== null) {
      chart.mark("broken", chart.lastPrice, "channel broken");
    }
  }
  if (event.type === "alert_endpoint_disabled") run(refreshAlerts); // the panel shows it disabled
  refreshSoon();
}

function subscribeAccount() {
  socket.subscribe(FILLS, {}, {
    next: (payload) => payload.data && onFill(payload.data.fills),
    error: (errors) => banner(`Fills: ${errors[0]?.message}`),
  });
  socket.subscribe(EVENTS, {}, {
    next: (payload) => payload.data && onEvent(payload.data.positionEvents),
    error: (errors) => banner(`Events: ${errors[0]?.message}`),
  });
}

// ------------------------------------------------------------------------------ strategy form

const FORM_FIELDS = ["name", "basePrice", "topPrice", "capitalPercentage", "buyThreshold", "sellThreshold", "minProfit", "timeframe"];

function clearFormErrors(form) {
  for (const el of $$(".field-error", form)) el.replaceChildren();
  $(".form-error", form).textContent = "";
  for (const el of $$(".invalid", form)) el.classList.remove("invalid");
}

function openStrategyForm(strategy = null) {
  const form = $("#strategy-form");
  state.editingId = strategy ? strategy.id : null;
  clearFormErrors(form);
  $("#strategy-form-title").textContent = strategy ? `Edit ${strategy.name}` : "New channel";
  const symbol = form.elements.symbol;
  symbol.replaceChildren(...state.symbols.map((s) => h("option", { value: s }, s)));
  symbol.disabled = Boolean(strategy);
  if (strategy) {
    symbol.value = strategy.symbol.symbol;
    for (const name of FORM_FIELDS) form.elements[name].value = strategy[name];
  } else {
    form.reset();
  }
  form.hidden = false;
  form.elements.name.focus();
}

/** Show an API error next to its field (extensions.details.field), else under the form. */
function showFormError(form, error) {
  let field = error.details?.field;
  if (!field) {
    // A value the API could not read: "… got invalid value 'x' at 'input.basePrice' …"
    const match = /'input\.(\w+)'/.exec(error.message);
    if (match) field = match[1];
  }
  const slot = field && $(`[data-error-for="${CSS.escape(field)}"]`, form);
  if (!slot) {
    $(".form-error", form).textContent = error.message;
    return;
  }
  slot.replaceChildren(error.message);
  form.elements[field]?.classList.add("invalid");
  const smallest = error.details?.smallest_workable_top;
  if (smallest) {
    slot.append(
      " ",
      h(
        "button",
        {
          type: "button",
          class: "small",
          "data-action": "use-smallest-top",
          onclick: () => {
            form.elements.topPrice.value = smallest;
            clearFormErrors(form);
          },
        },
        `Use ${smallest}`,
      ),
    );
  }
}

async function submitStrategyForm(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  const input = {};
  for (const name of FORM_FIELDS) {
    const value = form.elements[name].value.trim();
    if (value !== "") input[name] = value;
  }
  try {
    if (state.editingId) {
      await session.request(
        `mutation Update($id: ID!, $input: UpdateStrategyInput!) { updateStrategy(id: $id, input: $input) { ${STRATEGY_FIELDS} } }`,
        { id: state.editingId, input },
      );
    } else {
      input.symbol = form.elements.symbol.value;
      const data = await session.request(
        `mutation Create($input: CreateStrategyInput!) { createStrategy(input: $input) { ${STRATEGY_FIELDS} } }`,
        { input },
      );
      state.selectedId = data.createStrategy.id;
    }
    form.hidden = true;
    await refresh();
    await selectStrategy(state.selectedId);
  } catch (e) {
    if (e instanceof ApiError) showFormError(form, e);
    else $(".form-error", form).textContent = String(e);
  }
}

// -------------------------------------------------------------------------------------- actions

async function onAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const { action, id } = button.dataset;
  const strategy = state.strategies.find((s) => s.id === id);
  switch (action) {
    case "select":
      await selectStrategy(id);
      break;
    case "edit":
      openStrategyForm(strategy);
      break;
    case "pause":
    case "activate":
      await run(async () => {
        await session.request(
          "mutation Active($id: ID!, $on: Boolean!) { setStrategyActive(id: $id, isActive: $on) { id state } }",
          { id, on: action === "activate" },
        );
        await refresh();
      });
      break;
    case "schedule":
      await run(async () => {
        await session.request("mutation Schedule($id: ID!) { scheduleSell(positionId: $id) { id status } }", { id });
        await refresh();
      });
      break;
    case "cancel-scheduled":
      await run(async () => {
        await session.request("mutation Cancel($id: ID!) { cancelScheduledSell(id: $id) { id status } }", { id });
        await refresh();
      });
      break;
    case "cancel-form":
      $("#strategy-form").hidden = true;
      break;
    case "archive":
      // Confirmed by a second click, like the emergency stop (kept in the state: a refresh redraws the rows).
      if (state.confirmArchive !== id) {
        state.confirmArchive = id;
        renderStrategies();
        return;
      }
      state.confirmArchive = null;
      await run(async () => {
        await session.request("mutation Archive($id: ID!) { archiveStrategy(id: $id) { id state } }", { id });
        await refresh();
      });
      renderStrategies();
      break;
    case "withdraw":
      await submitFund(event, "withdraw");
      break;
    case "export-trades":
      await exportTrades();
      break;
    default:
      break;
  }
}

const FUND =
  "mutation Fund($id: ID!, $amount: Decimal!) { allocateCapital(strategyId: $id, amount: $amount) { id amount warnings } }";
const WITHDRAW =
  "mutation Withdraw($id: ID!, $amount: Decimal!) { withdrawCapital(strategyId: $id, amount: $amount) { id amount warnings } }";

/** Add principal to the selected strategy, or (`withdraw`) take free principal back. A change that
 * stands but leaves entries too small to work (SPEC §4 rule 11) says so under the form. */
async function submitFund(event, kind = "allocate") {
  event.preventDefault();
  const form = $("#fund-form");
  const error = $(".form-error", form);
  const warning = $(".form-warning", form);
  error.textContent = "";
  warning.textContent = "";
  const amount = form.elements.amount.value.trim();
  if (!state.selectedId || !amount) return;
  await run(async () => {
    const data = await session.request(kind === "withdraw" ? WITHDRAW : FUND, { id: state.selectedId, amount });
    const result = kind === "withdraw" ? data.withdrawCapital : data.allocateCapital;
    warning.textContent = (result.warnings || []).join(" ");
    form.reset();
    await refresh();
  }, error);
}

// A strategy that needs capital has its allocate field in its row.
async function submitRowFund(event) {
  const form = event.target.closest("form.row-fund");
  if (!form) return;
  event.preventDefault();
  const amount = form.elements.amount.value.trim();
  if (!amount) return;
  await run(async () => {
    await session.request(FUND, { id: form.dataset.id, amount });
    await refresh();
  });
}

/** The client's fills as CSV (GET /export/trades.csv with the access token), saved as a file. */
async function exportTrades() {
  await run(async () => {
    const { blob, name } = await session.download("/export/trades.csv");
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
  });
}

// ------------------------------------------------------------------------------ emergency stop
// The client-wide emergency stop (`pauseTrading` / `resumeTrading`; `me { tradingPausedAt }` says
// whether it is on): shown only when this server's schema has them (gql_api/web.py puts their names
// in the page's criptoren-features meta tag).

const CONFIRM_LABEL = "Click again to stop all trading";
let confirmTimer = null;

function setPaused(paused) {
  state.paused = paused;
  const button = $("#emergency-stop");
  // A periodic refresh must not undo a confirmation the user is in the middle of (issue 14): while
  // the button waits for its second click, it keeps saying so, unless trading did get paused.
  const confirming = button.classList.contains("confirming") && !paused;
  if (paused) {
    window.clearTimeout(confirmTimer);
    button.classList.remove("confirming");
  }
  button.textContent = confirming ? CONFIRM_LABEL : paused ? "Resume trading" : "Emergency stop";
  button.classList.toggle("danger", !paused);
  button.dataset.paused = String(paused);
  document.body.classList.toggle("trading-paused", paused);
  $("#me").dataset.paused = String(paused);
  if (paused) banner("Trading is paused: no new entries. Resume it with the button at the top.", "warning");
  else if ($("#banner").classList.contains("warning")) banner("");
}

async function onEmergencyStop() {
  const button = $("#emergency-stop");
  if (state.paused) {
    if (!features.has("resumeTrading")) return;
    await run(async () => {
      const data = await session.request("mutation Resume { resumeTrading { paused } }");
      setPaused(data.resumeTrading.paused);
      await refresh();
    });
    return;
  }
  if (!button.classList.contains("confirming")) {
    // A second click within five seconds confirms: no trading stops by accident.
    button.classList.add("confirming");
    button.textContent = CONFIRM_LABEL;
    confirmTimer = window.setTimeout(() => {
      button.classList.remove("confirming");
      setPaused(state.paused);
    }, 5000);
    return;
  }
  window.clearTimeout(confirmTimer);
  button.classList.remove("confirming");
  await run(async () => {
    const data = await session.request("mutation Stop { pauseTrading { paused pausedAt } }");
    setPaused(data.pauseTrading.paused);
    await refresh();
  });
}

// ------------------------------------------------------------------------------------ backtest

const HISTORY_INTERVALS = [
  ["1m", 60e3],
  ["5m", 300e3],
  ["15m", 900e3],
  ["1h", 3600e3],
  ["4h", 14400e3],
  ["1d", 86400e3],
];
const BACKTEST = `query Backtest($input: BacktestInput!) { backtest(input: $input) {
  summary { symbol interval candles start end basePrice entryLevel exitLevel topPrice bankroll entries exits wins
    skippedEntries netProfit fees maxDrawdown maxDrawdownPct exposurePct channelBrokenAt leftOpen leftScheduled
    unrealised finalEquity }
  trades { executedAt side price quantity profit reason position }
  tradesTruncated
  marks { at price kind } } }`;

/** The finest stored interval, not finer than the backtest's, whose latest 1,000 candles span `span` ms. */
function historyInterval(backtested, span) {
  const finest = HISTORY_INTERVALS.find(([name]) => name === backtested)?.[1] ?? 0;
  const fit = HISTORY_INTERVALS.find(([, ms]) => ms >= finest && span / ms <= 1000);
  return fit ? fit[0] : "1d";
}

async function submitBacktest(event) {
  event.preventDefault();
  const form = event.target;
  const error = $(".form-error", form);
  error.textContent = "";
  const input = { strategyId: form.elements.strategyId.value, interval: form.elements.interval.value, maxTrades: 1000 };
  if (!input.strategyId) delete input.strategyId; // none listed yet: the API then asks for a channel
  for (const name of ["basePrice", "topPrice"]) {
    const value = form.elements[name].value.trim();
    if (value) input[name] = value;
  }
  for (const name of ["start", "end"]) {
    const value = form.elements[name].value;
    if (value) input[name] = new Date(value).toISOString();
  }
  form.classList.add("busy");
  const result = await run(() => session.request(BACKTEST, { input }), error);
  form.classList.remove("busy");
  if (!result) return;
  const { summary, trades, marks } = result.backtest;
  const start = Date.parse(summary.start);
  const end = Date.parse(summary.end);
  const interval = historyInterval(summary.interval, end - start);
  const history = await run(() =>
    session.request("query H($s: String!, $i: String!) { priceHistory(symbol: $s, interval: $i, limit: 1000) { closeTime close } }", {
      s: summary.symbol,
      i: interval,
    }),
  );
  const drawn = {
    levels: { base: summary.basePrice, entry: summary.entryLevel, exit: summary.exitLevel, top: summary.topPrice },
    start,
    end,
    candles: (history?.priceHistory ?? []).map((c) => ({ t: Date.parse(c.closeTime), close: Number(c.close) })),
    trades: trades.map((t) => ({ t: Date.parse(t.executedAt), side: t.side, price: Number(t.price), profit: t.profit })),
    marks: marks.map((m) => ({ t: Date.parse(m.at), kind: m.kind, price: Number(m.price) })),
  };
  lastBacktest = { ...drawBacktest($("#backtest-chart"), drawn), summary };
  lastBacktest.redraw = () => drawBacktest($("#backtest-chart"), drawn);
  renderBacktestSummary(summary, result.backtest.tradesTruncated);
  $("#backtest-trades tbody").replaceChildren(
    ...trades.slice(0, 200).map((t) =>
      h(
        "tr",
        {},
        h("td", {}, shortTime(t.executedAt)),
        h("td", {}, t.side),
        h("td", { class: "num" }, formatPrice(t.price)),
        h("td", { class: "num" }, t.quantity),
        h("td", { class: "num" }, t.profit === null ? "" : signed(Number(t.profit))),
        h("td", {}, t.reason),
      ),
    ),
  );
}

function renderBacktestSummary(s, truncated) {
  const items = [
    ["Candles", `${s.candles.toLocaleString("en-US")} × ${s.interval}`],
    ["Entries / exits / wins", `${s.entries} / ${s.exits} / ${s.wins}${truncated ? " (first trades shown)" : ""}`],
    ["Skipped entries", s.skippedEntries],
    ["Net profit", formatMoney(s.netProfit)],
    ["Fees", formatMoney(s.fees)],
    ["Max drawdown", `${formatMoney(s.maxDrawdown)} (${Number(s.maxDrawdownPct).toFixed(2)} %)`],
    ["Exposure", `${Number(s.exposurePct).toFixed(1)} %`],
    ["Left open / scheduled", `${s.leftOpen} / ${s.leftScheduled} (unrealised ${formatMoney(s.unrealised)})`],
    ["Final equity", `${formatMoney(s.finalEquity)} of ${formatMoney(s.bankroll)}`],
    ["Channel broken", s.channelBrokenAt ? shortTime(s.channelBrokenAt) : "no"],
  ];
  $("#backtest-summary").replaceChildren(...items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, String(v)))));
}

// ----------------------------------------------------------------------------------- the views

function showTab(name) {
  for (const b of $$("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  $("#live-view").hidden = name !== "live";
  $("#backtest-view").hidden = name !== "backtest";
  if (name === "backtest" && lastBacktest) lastBacktest.redraw();
}

function showLogin() {
  window.clearInterval(pollTimer);
  socket.stop();
  Object.assign(state, { me: null, strategies: [], open: [], scheduled: [], events: [], selectedId: null });
  state.subscribedSymbols = "";
  state.stopPrices = null;
  $("#login-view").hidden = false;
  $("#live-view").hidden = true;
  $("#backtest-view").hidden = true;
  $("#tabs").hidden = true;
  $("#logout").hidden = true;
  $("#emergency-stop").hidden = true;
  $("#me").textContent = "";
  $("#api-key").focus();
}

async function showDashboard() {
  $("#login-view").hidden = true;
  $("#tabs").hidden = false;
  $("#tab-backtest").hidden = !features.has("backtest");
  $("#logout").hidden = false;
  $("#emergency-stop").hidden = !features.has("pauseTrading");
  showTab("live");
  const who = await run(() => session.request("query Me { me { id name } symbols { symbol } }"));
  if (!who) return;
  state.me = who.me;
  state.symbols = who.symbols.map((s) => s.symbol);
  $("#me").textContent = who.me.name;
  socket.start();
  subscribeAccount();
  await run(refresh);
  await refreshAlerts();
  window.clearInterval(pollTimer);
  pollTimer = window.setInterval(() => {
    if (document.visibilityState === "visible") run(refresh);
  }, POLL_MS);
}

async function onLogin(event) {
  event.preventDefault();
  const error = $("#login-error");
  error.textContent = "";
  try {
    await session.login($("#api-key").value.trim(), $("#api-secret").value);
    $("#api-secret").value = "";
  } catch (e) {
    error.textContent = e.message;
  }
}

let refreshAlerts = async () => {};

function init() {
  chart = new LiveChart($("#chart"), { capacity: CHART_POINTS });
  $("#login-form").addEventListener("submit", onLogin);
  $("#strategy-form").addEventListener("submit", submitStrategyForm);
  $("#fund-form").addEventListener("submit", submitFund);
  $("#strategies").addEventListener("submit", submitRowFund);
  $("#backtest-form").addEventListener("submit", submitBacktest);
  $("#new-strategy").addEventListener("click", () => openStrategyForm(null));
  $("#logout").addEventListener("click", () => session.logout());
  $("#emergency-stop").addEventListener("click", onEmergencyStop);
  $("#tabs").addEventListener("click", (e) => e.target.dataset.tab && showTab(e.target.dataset.tab));
  $("#live-view").addEventListener("click", onAction);
  refreshAlerts = initAlerts({ session, run, h, $, banner });
  session.onChange((kind) => {
    if (kind === "logout") showLogin();
    else if (kind === "login") showDashboard();
    else if (kind === "refresh") socket.restart(); // the open socket would be closed at the old token's expiry
  });
  if (session.loggedIn) showDashboard();
  else showLogin();
}

// Read-only hooks for tests and for curious users (the browser console).
window.criptoren = Object.freeze({
  chartPoints: () => chart.size,
  chartUpdates: () => chart.total,
  chartCapacity: () => chart.capacity,
  chartMarkers: () => chart.markers.map(({ kind, price }) => ({ kind, price })),
  lastPrice: () => chart.lastPrice,
  connection: () => ({ ...socket.status }),
  features: () => [...features],
  refresh: () => refresh(), // what the periodic refresh does, at once
  backtest: () => (lastBacktest ? { candles: lastBacktest.candles, trades: lastBacktest.trades, marks: lastBacktest.marks } : null),
});

init();
