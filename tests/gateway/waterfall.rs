//! docs/PLAN.md "The waterfall": with `conflux-debug: 1` each call names
//! the field that made it, times are to the microsecond, and the mapping
//! problems met — a `select` or `from` path absent from the answer, a key
//! the upstream object lacks, a value of the wrong type — are listed, so a
//! silent `null` has an explanation; `/metrics` counts them per field.

use serde_json::{json, Value};
use wiremock::MockServer;

use crate::support::{json_reply, serve, ProcessGateway, TestGateway};

const SDL: &str = r#"
type Query { profile(id: ID!): Profile  profiles: [Profile!]! }
type Profile { id: ID!  name: String  age: Int  city: String  nickname: String  badges: [Badge!] }
type Badge { id: ID!  title: String }
"#;

const TOML: &str = r#"
[server]
debug = true

[services.people]
url = "{people}"

[resolvers]
"Query.profile" = { service = "people", get = "/people/{args.id}", select = "data.person" }
"Query.profiles" = { service = "people", get = "/people" }
"Profile.city" = { from = "address.town" }
"Profile.badges" = { service = "people", get = "/badges", batch = { key = "{parent.id}", get = "/badges?ids={keys}", match = "owner", max = 10 } }
"#;

async fn people() -> MockServer {
    let people = MockServer::start().await;
    // `select = "data.person"`, but the service says `data.profile`.
    serve(
        &people,
        "GET",
        "/people/p1",
        json_reply(json!({"data": {"profile": {"id": "p1"}}})),
    )
    .await;
    // `age` is a string; `address.city`, not `address.town`; no `nickname`.
    serve(
        &people,
        "GET",
        "/people",
        json_reply(json!([
            {"id": "p1", "name": "Ada", "age": "forty", "address": {"city": "Paris"}},
            {"id": "p2", "name": "Bo", "age": 7, "address": {"town": "Oslo"}, "nickname": "b"}
        ])),
    )
    .await;
    serve(
        &people,
        "GET",
        "/badges",
        json_reply(json!([{"id": "b1", "owner": "p1", "title": "first"}])),
    )
    .await;
    people
}

fn debug_post(query: &str) -> (Vec<u8>, [(&'static str, &'static str); 2]) {
    (
        serde_json::to_vec(&json!({ "query": query })).expect("serializes"),
        [("content-type", "application/json"), ("conflux-debug", "1")],
    )
}

#[tokio::test]
async fn each_call_names_its_field_and_times_are_whole_microseconds() {
    let people = people().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(TOML)
        .upstream("people", &people)
        .start()
        .await;
    let (body, headers) = debug_post("{ list: profiles { name badges { title } } }");
    let reply = gateway.post_raw(body, &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let calls = reply.json()["extensions"]["conflux"]["calls"].clone();
    let fields: Vec<&str> = calls
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["field"].as_str().expect("a field path"))
        .collect();
    assert_eq!(fields, ["list", "list.badges"]);
    assert_eq!(calls[1]["batch_size"], 2);
    for call in calls.as_array().expect("calls") {
        for key in ["start_ms", "duration_ms"] {
            let value = call[key].as_f64().expect("a number");
            let micros = value * 1000.0;
            assert!(
                (micros - micros.round()).abs() < 1e-6,
                "{key} = {value}: not whole microseconds"
            );
            // Written as such, not as 0.30000000000000004.
            let text = call[key].to_string();
            let decimals = text.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 3, "{key} written as {text}");
        }
    }
}

#[tokio::test]
async fn the_waterfall_lists_the_mapping_problems_behind_silent_nulls() {
    let people = people().await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(TOML)
        .upstream("people", &people)
        .start()
        .await;
    let (body, headers) =
        debug_post(r#"{ profile(id: "p1") { id } profiles { name age city nickname } }"#);
    let reply = gateway.post_raw(body, &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let answer = reply.json();
    assert_eq!(answer["data"]["profile"], Value::Null);
    let problems: Vec<(String, Value, String)> = answer["extensions"]["conflux"]["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("problems listed: {answer}"))
        .iter()
        .map(|p| {
            (
                format!(
                    "{} {}",
                    p["field"].as_str().unwrap_or("?"),
                    p["problem"].as_str().unwrap_or("?")
                ),
                p["path"].clone(),
                p["detail"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            (
                "Query.profile missing".to_owned(),
                json!(["profile"]),
                "the `select` path `data.person` is not in the answer".to_owned()
            ),
            (
                "Profile.age wrong_type".to_owned(),
                json!(["profiles", 0, "age"]),
                answer["errors"][0]["message"]
                    .as_str()
                    .and_then(|m| m.split_once(": ").map(|(_, rest)| rest.to_owned()))
                    .expect("the age error's message")
            ),
            (
                "Profile.city missing".to_owned(),
                json!(["profiles", 0, "city"]),
                "the `from` path `address.town` is not in the upstream object".to_owned()
            ),
            (
                "Profile.nickname missing".to_owned(),
                json!(["profiles", 0, "nickname"]),
                "the upstream object has no key `nickname`".to_owned()
            ),
        ]
    );
    // Without the header: the same answer, no waterfall.
    let reply = gateway
        .post(r#"{ profile(id: "p1") { id } profiles { name age city nickname } }"#)
        .await;
    assert!(reply.json().get("extensions").is_none(), "{}", reply.text);
}

#[tokio::test]
async fn metrics_count_the_mapping_problems_per_field() {
    let people = people().await;
    let gateway = ProcessGateway::start(
        &TOML.replace("debug = true", "debug = false"),
        SDL,
        &[("people", &people.uri())],
    )
    .await;
    for _ in 0..3 {
        let reply = gateway
            .post(r#"{ profile(id: "p1") { id } profiles { age city } }"#)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let metrics = gateway
        .request(reqwest::Method::GET, "/metrics", &[], None)
        .await
        .text;
    let count = |field: &str, problem: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("conflux_mapping_problems_total{"))
            .filter(|l| {
                l.contains(&format!("field=\"{field}\""))
                    && l.contains(&format!("problem=\"{problem}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("Query.profile", "missing"), 3.0, "{metrics}");
    assert_eq!(count("Profile.age", "wrong_type"), 3.0, "{metrics}");
    assert_eq!(count("Profile.city", "missing"), 3.0, "{metrics}");
    assert_eq!(count("Profile.nickname", "missing"), 0.0, "not asked for");
}

#[tokio::test]
async fn a_long_list_of_problems_is_cut_at_one_hundred() {
    let people = MockServer::start().await;
    let many: Vec<Value> = (0..500).map(|i| json!({"id": format!("p{i}")})).collect();
    serve(&people, "GET", "/people", json_reply(Value::Array(many))).await;
    let gateway = TestGateway::builder()
        .schema(SDL)
        .config(TOML)
        .upstream("people", &people)
        .start()
        .await;
    let (body, headers) = debug_post("{ profiles { id name } }");
    let reply = gateway.post_raw(body, &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let answer = reply.json();
    assert_eq!(
        answer["data"]["profiles"].as_array().map(Vec::len),
        Some(500)
    );
    let problems = answer["extensions"]["conflux"]["problems"]
        .as_array()
        .expect("problems")
        .clone();
    assert_eq!(problems.len(), 100);
    assert_eq!(problems[99]["path"], json!(["profiles", 99, "name"]));
}
