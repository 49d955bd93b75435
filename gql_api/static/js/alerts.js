// The Alerts panel: add a webhook (its signing secret is shown once) or a Telegram chat, for the event
// types ticked (the server's defaults to start with), send a test, re-activate an endpoint the server
// disabled, and see an endpoint's last deliveries (with a redeliver button). Everything goes through
// GraphQL.

const ENDPOINTS = "query AlertEndpoints { alertEndpoints { id kind url telegramChatId eventTypes isActive disabledReason } }";
const TYPES = "query AlertEventTypes { alertEventTypes alertDefaultEventTypes }";
const CREATE = `mutation CreateWebhook($url: String!, $types: [String!]) {
  createWebhookEndpoint(url: $url, eventTypes: $types) { endpoint { id } signingSecret } }`;
const CREATE_TELEGRAM = `mutation CreateTelegram($token: String!, $chat: String!, $types: [String!]) {
  createTelegramEndpoint(botToken: $token, chatId: $chat, eventTypes: $types) { id } }`;
const ACTIVATE = "mutation ActivateAlert($id: ID!) { updateAlertEndpoint(id: $id, isActive: true) { id isActive } }";
const TEST = "mutation TestAlert($id: ID!) { testAlertEndpoint(id: $id) { ok statusCode error } }";
const DELETE = "mutation DeleteAlert($id: ID!) { deleteAlertEndpoint(id: $id) }";
const LOG = `query AlertLog($id: ID!) { alertDeliveries(endpointId: $id, first: 10) {
  nodes { id eventId status attempts lastStatusCode lastError nextAttemptAt deliveredAt } } }`;
const REDELIVER = "mutation Redeliver($id: ID!) { redeliverAlert(deliveryId: $id) { id status } }";

/** Wire the panel; `api` = { session, run, h, $, banner }. Returns `refresh()`. */
export function initAlerts({ session, run, h, $, banner }) {
  const card = $("#alerts");
  const form = $("#alert-form");
  const secret = $("#alert-secret");
  let shownLog = null;
  let typesShown = false;

  const kind = () => form.kind.value;
  function showKind() {
    for (const label of form.querySelectorAll("[data-kind]")) label.hidden = label.dataset.kind !== kind();
  }
  form.kind.addEventListener("change", showKind);

  const chosen = () => [...form.querySelectorAll(".choices input:checked")].map((i) => i.value);
  function countChosen() {
    $('[data-k="chosen"]', form).textContent = `(${chosen().length} chosen)`;
  }
  form.addEventListener("change", (event) => {
    if (event.target.closest(".choices")) countChosen();
  });

  /** The event types as checkboxes, the server's defaults ticked (once: a choice in progress stays). */
  async function showTypes() {
    if (typesShown) return;
    const data = await run(() => session.request(TYPES));
    if (!data) return;
    const defaults = new Set(data.alertDefaultEventTypes);
    $(".choices", form).replaceChildren(
      ...data.alertEventTypes.map((t) =>
        h("label", {}, h("input", { type: "checkbox", name: "eventType", value: t, checked: defaults.has(t) }), t),
      ),
    );
    typesShown = true;
    countChosen();
  }

  const time = (iso) => (iso ? new Date(iso).toISOString().slice(5, 19).replace("T", " ") : "—");

  async function showLog(id) {
    shownLog = id;
    const data = await run(() => session.request(LOG, { id }));
    if (!data) return;
    const rows = data.alertDeliveries.nodes.map((d) =>
      h(
        "tr",
        { "data-delivery": d.id },
        h("td", { text: d.eventId }),
        h("td", { class: `delivery-${d.status}`, text: d.status }),
        h("td", { class: "num", text: String(d.attempts) }),
        h("td", { title: d.lastError || "", text: d.lastStatusCode ? String(d.lastStatusCode) : d.lastError ? "error" : "—" }),
        h("td", { text: d.status === "pending" ? time(d.nextAttemptAt) : "—" }),
        h("td", {}, h("button", { type: "button", class: "small ghost", "data-action": "redeliver", "data-id": d.id, text: "Redeliver" })),
      ),
    );
    $("#alert-log-title").hidden = false;
    $("#alert-log-title").textContent = `Last deliveries of endpoint #${id}`;
    $("#alert-deliveries").hidden = false;
    $("#alert-deliveries tbody").replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "6", text: "None yet." }))]));
  }

  async function refresh() {
    const data = await run(() => session.request(ENDPOINTS));
    if (!data) return;
    const rows = data.alertEndpoints.map((e) =>
      h(
        "tr",
        { "data-endpoint": e.id },
        h("td", { text: e.id }),
        h("td", { class: "where", text: e.kind === "webhook" ? e.url : `Telegram ${e.telegramChatId}` }),
        h("td", { class: "hint", text: `${e.eventTypes.length} types`, title: e.eventTypes.join(", ") }),
        h("td", { title: e.disabledReason || "", text: e.isActive ? "active" : "disabled" }),
        h(
          "td",
          { class: "actions" },
          e.isActive
            ? null
            : h("button", { type: "button", class: "small", "data-action": "activate-alert", "data-id": e.id, text: "Activate" }),
          h("button", { type: "button", class: "small", "data-action": "test-alert", "data-id": e.id, text: "Send test" }),
          h("button", { type: "button", class: "small ghost", "data-action": "alert-log", "data-id": e.id, text: "Deliveries" }),
          h("button", { type: "button", class: "small ghost", "data-action": "delete-alert", "data-id": e.id, text: "Delete" }),
        ),
      ),
    );
    $("#alert-endpoints tbody").replaceChildren(...rows);
    $('[data-empty-for="alert-endpoints"]').hidden = rows.length > 0;
    if (shownLog && data.alertEndpoints.some((e) => e.id === shownLog)) await showLog(shownLog);
    await showTypes();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $(".form-error", form);
    error.textContent = "";
    const types = typesShown ? chosen() : null; // null: the server's defaults (the list is not loaded yet)
    if (types && !types.length) {
      error.textContent = "Choose at least one event type.";
      return;
    }
    if (kind() === "telegram") {
      const variables = { token: form.botToken.value.trim(), chat: form.chatId.value.trim(), types };
      const data = await run(() => session.request(CREATE_TELEGRAM, variables), error);
      if (!data) return;
      secret.hidden = true;
      banner(`Telegram endpoint #${data.createTelegramEndpoint.id} added: send a test to check the bot reaches the chat.`, "info");
      form.botToken.value = "";
      form.chatId.value = "";
    } else {
      const data = await run(() => session.request(CREATE, { url: form.url.value.trim(), types }), error);
      if (!data) return;
      const created = data.createWebhookEndpoint;
      secret.textContent = `Signing secret of endpoint #${created.endpoint.id} (shown once, store it now): ${created.signingSecret}`;
      secret.hidden = false;
      form.url.value = "";
    }
    await refresh();
  });

  card.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = button.dataset.id;
    if (button.dataset.action === "test-alert") {
      const data = await run(() => session.request(TEST, { id }));
      if (!data) return;
      const r = data.testAlertEndpoint;
      banner(r.ok ? `Test alert delivered (HTTP ${r.statusCode}).` : `Test alert failed: ${r.error}`, r.ok ? "info" : "error");
    } else if (button.dataset.action === "activate-alert") {
      if (await run(() => session.request(ACTIVATE, { id }))) await refresh();
    } else if (button.dataset.action === "alert-log") {
      await showLog(id);
    } else if (button.dataset.action === "delete-alert") {
      if (!(await run(() => session.request(DELETE, { id })))) return;
      if (shownLog === id) {
        shownLog = null;
        $("#alert-deliveries").hidden = true;
        $("#alert-log-title").hidden = true;
      }
      await refresh();
    } else if (button.dataset.action === "redeliver") {
      if (await run(() => session.request(REDELIVER, { id }))) await showLog(shownLog);
    }
  });

  return refresh;
}
