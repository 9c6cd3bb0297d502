// Apollo Client 4 runs one `@defer` query through `HttpLink` against the
// gateway at URL (argv[2]) and prints every result it observes, one JSON
// line each, until the complete one: what a frontend renders as the
// parts arrive. Run by tests/gateway/defer_apollo.rs.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { Defer20220824Handler } from "@apollo/client/incremental";

const url = process.argv[2];
const client = new ApolloClient({
  link: new HttpLink({ uri: url }),
  cache: new InMemoryCache(),
  incrementalHandler: new Defer20220824Handler(),
});

const query = gql`
  query UserPage {
    user(id: "1") {
      id
      name
      ... @defer(label: "reviews") {
        reviews { id text }
      }
    }
  }
`;

const started = Date.now();
const timer = setTimeout(() => {
  console.error("no complete result within 20 s");
  process.exit(2);
}, 20000);
const subscription = client.watchQuery({ query }).subscribe({
  next(result) {
    console.log(
      JSON.stringify({
        ms: Date.now() - started,
        dataState: result.dataState,
        data: result.data ?? null,
        error: result.error ? String(result.error) : null,
      }),
    );
    if (result.dataState === "complete" || result.error) {
      clearTimeout(timer);
      subscription.unsubscribe();
      process.exit(result.error ? 1 : 0);
    }
  },
  error(error) {
    console.error(String(error));
    process.exit(1);
  },
});
