//! `conflux import openapi` and `conflux check --openapi` (README command
//! table; docs/OPENAPI.md). Real, public documents (tests/fixtures/openapi,
//! README there) are imported, the result is checked, served in front of a
//! wiremock upstream and queried end to end; the linter's errors and
//! warnings are asserted at their `FILE:LINE:COL`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::temp::TempDir;
use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openapi")
        .join(name)
}

/// An imported project in a temp dir.
struct Project {
    dir: TempDir,
    service: String,
    toml: String,
    sdl: String,
    notes: Vec<String>,
}

impl Project {
    fn import(spec: &Path, service: &str, url: &str) -> Project {
        let dir = TempDir::new();
        let out = dir.path().join("project");
        let imported = conflux::openapi::import(spec, service, url, &out, false)
            .unwrap_or_else(|err| panic!("import of {} failed: {err}", spec.display()));
        let toml = std::fs::read_to_string(out.join("services.toml")).expect("services.toml");
        let sdl = std::fs::read_to_string(out.join(format!("schema/{service}.graphql")))
            .expect("the schema file");
        Project {
            dir,
            service: service.to_owned(),
            toml,
            sdl,
            notes: imported.notes.iter().map(ToString::to_string).collect(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("project/services.toml")
    }

    /// `conflux check`, in-process: every problem, one per line.
    fn check(&self) -> Result<(), String> {
        conflux::gateway::load(&self.config())
            .map(|_| ())
            .map_err(|problems| problems.to_string())
    }

    async fn serve(&self) -> TestGateway {
        TestGateway::builder()
            .config(&self.toml)
            .schema_file(&format!("{}.graphql", self.service), &self.sdl)
            .start()
            .await
    }
}

/// `data` of a reply without errors.
fn data(reply: &Reply) -> Value {
    let body = reply.json();
    assert!(body.get("errors").is_none(), "errors: {body}");
    body["data"].clone()
}

/// Runs the `conflux` binary in `dir`.
fn conflux(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run conflux");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn petstore_3_0_yaml_is_imported_checked_and_serves_a_get_and_a_post() {
    let upstream = MockServer::start().await;
    let base = format!("{}/v2", upstream.uri());
    let project = Project::import(&fixture("petstore-3.0.yaml"), "petstore", &base);
    project.check().expect("`conflux check` accepts the import");
    let findings =
        conflux::openapi::lint::check(&project.config(), "petstore", &fixture("petstore-3.0.yaml"))
            .expect("the lint runs");
    assert!(findings.is_empty(), "{findings:?}");
    // One entry per operation, in the document's order; names from operationId.
    assert!(project
        .toml
        .contains(r#""Query.getPetById" = { service = "petstore", get = "/pet/{args.petId}" }"#));
    assert!(project.toml.contains(
        r#""Mutation.placeOrder" = { service = "petstore", post = "/store/order", body = "{args.input}" }"#
    ));
    let order = project
        .sdl
        .find("findPetsByStatus")
        .expect("findPetsByStatus");
    assert!(order < project.sdl.find("getUserByName").expect("getUserByName"));
    // Descriptions, required → non-null, the enum, ids, the deprecation.
    assert!(project
        .sdl
        .contains("\"Returns a single pet\"\n  getPetById("));
    assert!(project.sdl.contains("petId: ID!"));
    assert!(project
        .sdl
        .contains("enum PetStatus {\n  available\n  pending\n  sold\n}"));
    assert!(project.sdl.contains("): [Pet!] @deprecated"));
    // The header parameter is listed with its pointer.
    assert!(
        project.notes.iter().any(|n| n
            .starts_with("#/paths/~1pet~1{petId}/delete/parameters/0: header parameter `api_key`")),
        "{:?}",
        project.notes
    );

    Mock::given(method("GET"))
        .and(path("/v2/pet/7"))
        .respond_with(json_reply(json!({
            "id": 7, "name": "Rex", "photoUrls": [], "status": "available",
            "category": {"id": 1, "name": "Dogs"}
        })))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/store/order"))
        .respond_with(json_reply(
            json!({"id": 5, "petId": 7, "quantity": 2, "status": "placed", "complete": false}),
        ))
        .mount(&upstream)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/pet/7"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let gateway = project.serve().await;

    let reply = gateway
        .post(r#"{ getPetById(petId: "7") { id name status category { name } } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"getPetById": {"id": "7", "name": "Rex", "status": "available", "category": {"name": "Dogs"}}})
    );
    let reply = gateway
        .post(r#"mutation { placeOrder(input: {petId: 7, quantity: 2, status: placed}) { id petId status } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"placeOrder": {"id": "5", "petId": "7", "status": "placed"}})
    );
    // An operation without a JSON answer is `Boolean`: true on success.
    let reply = gateway.post(r#"mutation { deletePet(petId: "7") }"#).await;
    assert_eq!(data(&reply), json!({"deletePet": true}));

    let requests = received(&upstream).await;
    assert_eq!(
        request_lines(&requests),
        ["GET /v2/pet/7", "POST /v2/store/order", "DELETE /v2/pet/7"]
    );
    assert_eq!(
        body_json(&requests[1]),
        json!({"petId": 7, "quantity": 2, "status": "placed"})
    );
}

#[tokio::test]
async fn petstore_3_1_json_is_imported_checked_and_serves_query_parameters_and_a_body() {
    let upstream = MockServer::start().await;
    let project = Project::import(&fixture("petstore-3.1.json"), "store", &upstream.uri());
    project.check().expect("`conflux check` accepts the import");
    assert!(project.sdl.contains("loginUser("));
    assert!(project.sdl.contains("input UserInput {"));

    Mock::given(method("GET"))
        .and(path("/user/login"))
        .respond_with(json_reply(json!("session-token-1")))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/user"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/pet/findByStatus"))
        .respond_with(json_reply(json!([{"id": 1, "name": "Tom", "photoUrls": ["a.png"], "tags": [{"id": 3, "name": "cat"}]}])))
        .mount(&upstream)
        .await;
    let gateway = project.serve().await;

    let reply = gateway
        .post(r#"{ loginUser(username: "ann", password: "s3cret") }"#)
        .await;
    assert_eq!(data(&reply), json!({"loginUser": "session-token-1"}));
    let reply = gateway
        .post(r#"{ findPetsByStatus(status: [available, sold]) { name photoUrls tags { name } } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"findPetsByStatus": [{"name": "Tom", "photoUrls": ["a.png"], "tags": [{"name": "cat"}]}]})
    );
    let reply = gateway
        .post(r#"mutation { createUser(input: {username: "ann", email: "ann@example.com", userStatus: 1}) }"#)
        .await;
    assert_eq!(data(&reply), json!({"createUser": true}));

    let requests = received(&upstream).await;
    assert_eq!(
        request_lines(&requests),
        [
            "GET /user/login?password=s3cret&username=ann",
            "GET /pet/findByStatus?status=available,sold",
            "POST /user"
        ]
    );
    assert_eq!(
        body_json(&requests[2]),
        json!({"username": "ann", "email": "ann@example.com", "userStatus": 1})
    );
}

#[tokio::test]
async fn petstore_expanded_all_of_is_merged_and_served() {
    let upstream = MockServer::start().await;
    let project = Project::import(
        &fixture("petstore-expanded-3.0.yaml"),
        "pets",
        &upstream.uri(),
    );
    project.check().expect("`conflux check` accepts the import");
    // Pet = allOf [NewPet, {id}]: both members' properties, both required lists.
    assert!(
        project
            .sdl
            .contains("type Pet {\n  name: String!\n  tag: String\n  id: ID!\n}"),
        "{}",
        project.sdl
    );
    Mock::given(method("GET"))
        .and(path("/pets"))
        .respond_with(json_reply(json!([{"id": 1, "name": "Rex", "tag": "dog"}])))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/pets"))
        .respond_with(json_reply(json!({"id": 2, "name": "Tom"})))
        .mount(&upstream)
        .await;
    let gateway = project.serve().await;

    let reply = gateway
        .post(r#"{ findPets(tags: ["dog", "big"], limit: 2) { id name tag } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"findPets": [{"id": "1", "name": "Rex", "tag": "dog"}]})
    );
    let reply = gateway
        .post(r#"mutation { addPet(input: {name: "Tom"}) { id name tag } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"addPet": {"id": "2", "name": "Tom", "tag": null}})
    );
    let requests = received(&upstream).await;
    assert_eq!(
        request_lines(&requests),
        ["GET /pets?limit=2&tags=dog,big", "POST /pets"]
    );
    assert_eq!(body_json(&requests[1]), json!({"name": "Tom"}));
}

/// The large document: GitHub's REST API description (over a thousand
/// operations, 13 MB of JSON), stored gzipped.
#[tokio::test]
async fn the_github_api_description_imports_and_checks_in_bounded_time_and_serves() {
    let dir = TempDir::new();
    let spec = dir.path().join("api.github.com.json");
    let gz = std::fs::File::open(fixture("api.github.com.json.gz")).expect("the fixture");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text)
        .expect("gunzip the fixture");
    std::fs::write(&spec, &text).expect("write the document");
    let upstream = MockServer::start().await;

    let started = Instant::now();
    let project = Project::import(&spec, "github", &upstream.uri());
    let imported = started.elapsed();
    project.check().expect("`conflux check` accepts the import");
    let total = started.elapsed();
    eprintln!(
        "github: {} bytes; import {:?}, import + check {:?}",
        text.len(),
        imported,
        total
    );
    assert!(
        total < Duration::from_secs(120),
        "import + check took {total:?}"
    );
    // The import passes its own lint: the same rules read the document.
    let findings =
        conflux::openapi::lint::check(&project.config(), "github", &spec).expect("the lint runs");
    assert!(findings.is_empty(), "{findings:?}");
    let entries =
        project.toml.matches("\n\"Query.").count() + project.toml.matches("\n\"Mutation.").count();
    assert!(entries > 1000, "{entries} resolver entries");
    assert!(project.sdl.contains("type FullRepository {"));

    Mock::given(method("GET"))
        .and(path("/repos/octo/hello"))
        .respond_with(json_reply(json!({
            "id": 1296269, "full_name": "octo/hello", "owner": {"login": "octo", "id": 1}
        })))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/hello/issues"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(
                json!({"id": 9, "number": 42, "title": "Broken", "labels": ["bug"]}),
            ),
        )
        .mount(&upstream)
        .await;
    let gateway = project.serve().await;
    let reply = gateway
        .post(r#"{ reposGet(owner: "octo", repo: "hello") { id full_name owner { login } } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"reposGet": {"id": "1296269", "full_name": "octo/hello", "owner": {"login": "octo"}}})
    );
    // `title` is `oneOf: [string, integer]`: the JSON scalar, passed through
    // in the body and in the answer.
    let reply = gateway
        .post(r#"mutation { issuesCreate(owner: "octo", repo: "hello", input: {title: "Broken", labels: ["bug"]}) { number title labels } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"issuesCreate": {"number": 42, "title": "Broken", "labels": ["bug"]}})
    );
    let requests = received(&upstream).await;
    assert_eq!(
        request_lines(&requests),
        ["GET /repos/octo/hello", "POST /repos/octo/hello/issues"]
    );
    assert_eq!(
        body_json(&requests[1]),
        json!({"title": "Broken", "labels": ["bug"]})
    );
}

/// A document of ours for the constructs the public ones lack: a union
/// with a discriminator, shapeless values, keys that are not GraphQL names.
const SHAPES: &str = r##"
openapi: 3.1.0
info: {title: Shapes, version: "1"}
paths:
  /items/{item-id}:
    get:
      operationId: get-item
      summary: One item
      parameters:
        - {name: item-id, in: path, required: true, schema: {type: string}}
        - {name: X-Trace, in: header, schema: {type: string}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Item"}
  /items:
    post:
      operationId: createItem
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [display-name]
              properties:
                display-name: {type: string}
                extra: {type: object, additionalProperties: true}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Item"}
    head:
      responses: {"200": {description: ok}}
components:
  schemas:
    Item:
      type: object
      required: [id, shape]
      properties:
        id: {type: integer, format: int64}
        display-name: {type: string, description: Shown to people}
        shape: {$ref: "#/components/schemas/Shape"}
        meta: {}
        either: {oneOf: [{type: string}, {type: integer}]}
    Shape:
      oneOf:
        - {$ref: "#/components/schemas/Circle"}
        - {$ref: "#/components/schemas/Square"}
      discriminator:
        propertyName: kind
        mapping: {round: "#/components/schemas/Circle"}
    Circle:
      type: object
      properties: {kind: {type: string}, radius: {type: number}}
    Square:
      type: object
      properties: {kind: {type: string}, side: {type: number}}
"##;

#[tokio::test]
async fn unions_json_values_and_renamed_keys_are_generated_and_served() {
    let dir = TempDir::new();
    let spec = dir.write("shapes.yaml", SHAPES);
    let upstream = MockServer::start().await;
    let project = Project::import(&spec, "shapes", &upstream.uri());
    project.check().expect("`conflux check` accepts the import");
    assert!(
        project.sdl.contains("union Shape = Circle | Square"),
        "{}",
        project.sdl
    );
    assert!(project.toml.contains("[types.Shape]\ndiscriminator = \"kind\"\nmap = { round = \"Circle\", Square = \"Square\" }"), "{}", project.toml);
    assert!(
        project.sdl.contains("getItem(itemId: String!): Item"),
        "{}",
        project.sdl
    );
    assert!(
        project
            .toml
            .contains(r#""Item.displayName" = { from = "display-name" }"#),
        "{}",
        project.toml
    );
    assert!(
        project.toml.contains(
            r#"body = { display-name = "{args.input.displayName}", extra = "{args.input.extra}" }"#
        ),
        "{}",
        project.toml
    );
    for pointer in [
        "#/paths/~1items~1{item-id}/get/parameters/1: header parameter `X-Trace`",
        "#/paths/~1items/head: HEAD operations cannot be mapped",
        "#/components/schemas/Item/properties/either: `oneOf` without a discriminator: typed `JSON`",
    ] {
        assert!(project.notes.iter().any(|n| n.starts_with(pointer)), "no `{pointer}` in {:?}", project.notes);
    }

    Mock::given(method("GET"))
        .and(path("/items/a%2Fb"))
        .respond_with(json_reply(json!({
            "id": 12, "display-name": "Disc", "shape": {"kind": "round", "radius": 2.5},
            "meta": {"tags": ["x"], "n": 1}, "either": 3
        })))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/items"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"id": 13, "display-name": "Box", "shape": {"kind": "Square", "side": 1.5}}),
        ))
        .mount(&upstream)
        .await;
    let gateway = project.serve().await;
    let reply = gateway
        .post(r#"{ getItem(itemId: "a/b") { id displayName meta either shape { __typename ... on Circle { radius } } } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"getItem": {"id": "12", "displayName": "Disc", "meta": {"tags": ["x"], "n": 1}, "either": 3,
               "shape": {"__typename": "Circle", "radius": 2.5}}})
    );
    let reply = gateway
        .post(r#"mutation { createItem(input: {displayName: "Box", extra: {color: "red", sizes: [1, 2]}}) { displayName shape { ... on Square { side } } } }"#)
        .await;
    assert_eq!(
        data(&reply),
        json!({"createItem": {"displayName": "Box", "shape": {"side": 1.5}}})
    );
    let requests = received(&upstream).await;
    assert_eq!(
        body_json(&requests[1]),
        json!({"display-name": "Box", "extra": {"color": "red", "sizes": [1, 2]}})
    );
}

#[test]
fn the_binary_lists_what_is_not_mapped_and_refuses_to_overwrite_without_force() {
    let dir = TempDir::new();
    let spec = fixture("petstore-3.0.yaml");
    let spec = spec.to_str().expect("a UTF-8 path");
    let args = [
        "import",
        "openapi",
        spec,
        "--service",
        "pets",
        "--url",
        "http://127.0.0.1:9/v2",
        "--out",
        "out",
    ];

    let (code, stderr) = conflux(dir.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("#/paths/~1pet~1{petId}~1uploadImage/post/requestBody: request body is multipart/form-data, not JSON"), "{stderr}");
    assert!(stderr.contains("8 queries, 12 mutations"), "{stderr}");
    let (code, stderr) = conflux(&dir.path().join("out"), &["check"]);
    assert_eq!(code, 0, "{stderr}");

    let written = std::fs::read_to_string(dir.path().join("out/services.toml")).expect("written");
    std::fs::write(dir.path().join("out/services.toml"), "# mine\n").expect("edit");
    let (code, stderr) = conflux(dir.path(), &args);
    assert_eq!(code, 1);
    assert!(stderr.contains("already exist"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/services.toml")).expect("kept"),
        "# mine\n"
    );

    let mut forced = args.to_vec();
    forced.push("--force");
    let (code, stderr) = conflux(dir.path(), &forced);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/services.toml")).expect("rewritten"),
        written
    );
}

#[test]
fn broken_documents_are_refused_with_their_line_or_pointer() {
    let dir = TempDir::new();
    dir.write("broken.yaml", "openapi: 3.0.3\npaths:\n  /a:\n    get: [\n");
    dir.write(
        "broken.json",
        "{\"openapi\": \"3.1.0\",\n \"paths\": {\"/a\": }\n}",
    );
    dir.write("swagger.yaml", "swagger: '2.0'\npaths: {}\n");
    dir.write(
        "dangling.yaml",
        "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      operationId: a\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {$ref: '#/components/schemas/Gone'}\n",
    );
    let run = |file: &str| {
        let out = format!("{file}.out");
        conflux(
            dir.path(),
            &[
                "import",
                "openapi",
                file,
                "--service",
                "s",
                "--url",
                "http://127.0.0.1:9",
                "--out",
                &out,
            ],
        )
    };

    let (code, stderr) = run("broken.yaml");
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("broken.yaml:5:1: invalid YAML: did not find expected node content"),
        "{stderr}"
    );
    let (code, stderr) = run("broken.json");
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("broken.json:2:18: invalid JSON"),
        "{stderr}"
    );
    let (code, stderr) = run("swagger.yaml");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Swagger 2.0") && stderr.contains("(at #/swagger)"),
        "{stderr}"
    );
    // A reference to nothing is listed, and the rest still imports.
    let (code, stderr) = run("dangling.yaml");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("#/paths/~1a/get/responses/200/content/application~1json/schema/$ref: `$ref: #/components/schemas/Gone` names nothing in this document: typed `JSON`"), "{stderr}");
    let (code, stderr) = conflux(&dir.path().join("dangling.yaml.out"), &["check"]);
    assert_eq!(code, 0, "{stderr}");
}

/// A hand-written project over the Petstore (3.0) document, with one
/// mapping or field for each error and warning of the linter.
const LINT_SDL: &str = r#"type Query {
  animal(id: ID!): Pet
  byStatus: [Pet]
  pet(id: ID!): Pet
  petName(id: ID!): String
  pets(tags: [String]): Pet
  order(id: ID!): Order
}

type Mutation {
  add: Pet
}

type Pet {
  id: ID!
  name: String!
  nickname: String
  kind: String
  category: Category
}

type Category {
  name: String
}

type Order {
  id: ID
  pet: Pet
}
"#;

const LINT_TOML: &str = r#"[services.pets]
url = "http://127.0.0.1:9/v2"

[resolvers]
"Query.animal" = { service = "pets", get = "/animals/{args.id}" }
"Query.byStatus" = { service = "pets", get = "/pet/findByStatus" }
"Query.pet" = { service = "pets", get = "/pet/{args.id}", query = { verbose = "true" } }
"Query.petName" = { service = "pets", get = "/pet/{args.id}", select = "nickname" }
"Query.pets" = { service = "pets", get = "/pet/findByTags", query = { tags = "{args.tags}" } }
"Query.order" = { service = "pets", get = "/store/order/{args.id}" }
"Mutation.add" = { service = "pets", post = "/pet" }
"Pet.kind" = { from = "category.kind" }
"Order.pet" = { service = "pets", get = "/pet/{parent.petId}", batch = { key = "{parent.petIdentifier}", get = "/pet/findByTags?tags={keys}", match = "ident" } }
"#;

fn lint_run(toml: &str, sdl: &str) -> (i32, Vec<String>) {
    let dir = TempDir::new();
    dir.write("services.toml", toml);
    dir.write("schema/schema.graphql", sdl);
    let spec = fixture("petstore-3.0.yaml");
    let arg = format!("pets={}", spec.display());
    let (code, stderr) = conflux(dir.path(), &["check", "--openapi", &arg]);
    let lines = stderr
        .lines()
        .map(|l| l.replace(&spec.display().to_string(), "petstore-3.0.yaml"))
        .collect();
    (code, lines)
}

/// Asserts exactly one line starts with `prefix` and mentions every word.
fn assert_line(lines: &[String], prefix: &str, words: &[&str]) {
    let found: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with(prefix) && words.iter().all(|w| l.contains(w)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one line at `{prefix}` mentioning {words:?}:\n{}",
        lines.join("\n")
    );
}

#[test]
fn check_with_openapi_reports_each_error_and_warning_at_its_line_and_column() {
    let (code, lines) = lint_run(LINT_TOML, LINT_SDL);
    assert_eq!(code, 1, "{}", lines.join("\n"));
    let at = |needle: &str| format!("services.toml:{}: ", position(LINT_TOML, needle));
    let sdl_at = |needle: &str| {
        format!(
            "schema/schema.graphql:{}: warning: ",
            position(LINT_SDL, needle)
        )
    };

    // Errors.
    assert_line(
        &lines,
        &at("\"Query.animal\""),
        &["GET /animals/{args.id}", "not an operation"],
    );
    assert_line(
        &lines,
        &at("\"Query.byStatus\""),
        &[
            "required query parameter `status`",
            "#/paths/~1pet~1findByStatus/get/parameters/0",
        ],
    );
    assert_line(
        &lines,
        &at("\"Mutation.add\""),
        &["requires a request body", "#/paths/~1pet/post/requestBody"],
    );
    // Warnings.
    let warn = |needle: &str| format!("{}warning: ", at(needle));
    assert_line(
        &lines,
        &warn("\"Query.pet\""),
        &["query parameter `verbose` is not declared"],
    );
    assert_line(
        &lines,
        &warn("\"Query.petName\""),
        &["`select = \"nickname\"`", "#/components/schemas/Pet"],
    );
    assert_line(&lines, &warn("\"Query.pets\""), &["`Pet`", "a list"]);
    assert_line(
        &lines,
        &warn("\"Pet.kind\""),
        &[
            "`from = \"category.kind\"`",
            "`kind` (after `category`)",
            "#/components/schemas/Category",
        ],
    );
    assert_line(
        &lines,
        &warn("\"Order.pet\""),
        &[
            "`batch.key` `{parent.petIdentifier}`",
            "#/components/schemas/Order",
        ],
    );
    // Fields without a mapping are reported at the field in the SDL.
    assert_line(
        &lines,
        &sdl_at("id: ID!\n  name"),
        &["`Pet.id` is non-null", "not required"],
    );
    assert_line(
        &lines,
        &sdl_at("nickname: String"),
        &["`Pet.nickname`", "not a property"],
    );
    assert_line(
        &lines,
        &warn("\"Order.pet\""),
        &["`match = \"ident\"`", "batched items"],
    );
    // `name` is required in the schema: no warning.
    assert!(
        !lines.iter().any(|l| l.contains("`Pet.name`")),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn warnings_alone_keep_check_successful() {
    let toml = r#"[services.pets]
url = "http://127.0.0.1:9/v2"

[resolvers]
"Query.pet" = { service = "pets", get = "/pet/{args.id}", query = { verbose = "true" } }
"#;
    let sdl = "type Query {\n  pet(id: ID!): Pet\n}\n\ntype Pet {\n  name: String!\n  nickname: String\n}\n";
    let (code, lines) = lint_run(toml, sdl);
    assert_eq!(code, 0, "{}", lines.join("\n"));
    assert_line(
        &lines,
        &format!(
            "services.toml:{}: warning: ",
            position(toml, "\"Query.pet\"")
        ),
        &["`verbose`"],
    );
    assert_line(
        &lines,
        &format!(
            "schema/schema.graphql:{}: warning: ",
            position(sdl, "nickname")
        ),
        &["`Pet.nickname`"],
    );
    assert!(
        lines.iter().any(|l| l.ends_with(": ok")),
        "{}",
        lines.join("\n")
    );

    // An unknown service is an error of its own.
    let dir = TempDir::new();
    dir.write("services.toml", toml);
    dir.write("schema/schema.graphql", sdl);
    let arg = format!("shop={}", fixture("petstore-3.0.yaml").display());
    let (code, stderr) = conflux(dir.path(), &["check", "--openapi", &arg]);
    assert_eq!(code, 1);
    assert!(stderr.contains("has no service `shop`"), "{stderr}");
}
