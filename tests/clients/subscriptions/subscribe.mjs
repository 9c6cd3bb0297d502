// The real npm clients of the two subscription transports, against the
// gateway at URL (argv[3]): `graphql-ws` (argv[2] = "ws") or
// `graphql-sse` in distinct connections mode (argv[2] = "sse"). Runs the
// operation argv[4] with variables argv[5] (JSON), prints every result
// it receives as one JSON line, and after argv[6] results disposes of
// the subscription and exits 0 (or, when the operation completes first,
// prints {"complete":true} and exits 0). Run by
// tests/gateway/subscription_clients.rs.
import { createClient as createWsClient } from "graphql-ws";
import { createClient as createSseClient } from "graphql-sse";
import WebSocket from "ws";

const [mode, url, query, variablesText, countText] = process.argv.slice(2);
const variables = JSON.parse(variablesText || "{}");
const wanted = Number(countText || "1");

const client =
  mode === "ws"
    ? createWsClient({
        url: url.replace(/^http/, "ws"),
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        lazy: true,
      })
    : createSseClient({ url, retryAttempts: 0, singleConnection: false });

const timer = setTimeout(() => {
  console.error(`fewer than ${wanted} results within 20 s`);
  process.exit(2);
}, 20000);

let received = 0;
let leaving = false;
const done = (code) => {
  if (leaving) return;
  leaving = true;
  clearTimeout(timer);
  dispose();
  client.dispose();
  // Let the disposal reach the gateway before exiting.
  setTimeout(() => process.exit(code), 200);
};
const dispose = client.subscribe(
  { query, variables },
  {
    next(result) {
      console.log(JSON.stringify(result));
      received += 1;
      if (received >= wanted) done(0);
    },
    error(error) {
      console.error(error instanceof Error ? error.message : JSON.stringify(error));
      done(1);
    },
    complete() {
      // Disposing completes the sink too: only a completion the gateway
      // sent is printed.
      if (leaving) return;
      console.log(JSON.stringify({ complete: true }));
      done(0);
    },
  },
);
