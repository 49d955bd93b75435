// GraphiQL on this server's own copies of its assets (see gql_api/web.py). Queries and mutations go
// over HTTP, subscriptions over WebSocket (graphql-transport-ws); the headers editor's JSON is sent
// with both: as HTTP headers, and as the WebSocket `connection_init` payload.
/* global React, ReactDOM, GraphiQL */
(function () {
  "use strict";
  const endpoint = new URL(window.location.pathname, window.location.href);
  const subscriptionUrl = endpoint.href.replace(/^http/, "ws");
  const fetcher = GraphiQL.createFetcher({ url: endpoint.href, subscriptionUrl });

  const DEFAULT_QUERY = `# Criptoren's GraphQL API. Log in first (no token needed):
#
#   mutation { login(apiKey: "ck_…", apiSecret: "cs_…") { accessToken refreshToken } }
#
# then put the access token in the Headers pane below:  {"Authorization": "Bearer <accessToken>"}
# It is sent with queries and mutations, and with subscriptions over WebSocket.

{
  strategies { nodes { id name state levels { base entry exit top } } }
  capitalBalance { principal committed free profit }
}
`;

  // Logged in to the dashboard in this tab: its access token fills the headers editor.
  let headers;
  try {
    const session = JSON.parse(window.sessionStorage.getItem("criptoren.session") || "null");
    if (session && session.accessToken) {
      headers = JSON.stringify({ Authorization: `Bearer ${session.accessToken}` }, null, 2);
    }
  } catch (e) {
    headers = undefined;
  }
  // `?q=<query>` opens GraphiQL on that query (GET /graphql?query=… would run it instead).
  const params = new URLSearchParams(window.location.search);

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultQuery: DEFAULT_QUERY,
      query: params.get("q") || undefined,
      headers,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: headers ? "headers" : true,
    }),
  );
})();
