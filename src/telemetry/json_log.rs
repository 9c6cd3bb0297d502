//! The JSON log line (`--log-format json`), written straight into one
//! buffer. tracing-subscriber's JSON format serialises each event through
//! serde and a `fmt::Write` adaptor; for the one line every request logs
//! that was about a thirtieth of the gateway's CPU per query. The output is
//! the same: `timestamp`, `level`, `fields`, `target`. An event inside a
//! span (OTLP export on) or forwarded from the `log` crate goes to
//! tracing-subscriber's own formatter, which adds `span` and `spans` and
//! normalises `log` metadata.

use std::fmt;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format of the JSON log (use with the layer's `.json()`, which
/// sets the field format span fields are stored in for the fallback).
pub struct JsonLines {
    fallback: Format<Json>,
}

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            fallback: Format::default().json(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if ctx.lookup_current().is_some() || meta.target() == "log" {
            return self.fallback.format_event(ctx, writer, event);
        }
        let mut timestamp = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Vec::with_capacity(320);
        line.extend_from_slice(b"{\"timestamp\":");
        json(&mut line, timestamp.as_str());
        line.extend_from_slice(b",\"level\":");
        json(&mut line, meta.level().as_str());
        line.extend_from_slice(b",\"fields\":{");
        event.record(&mut Fields {
            line: &mut line,
            first: true,
        });
        line.extend_from_slice(b"},\"target\":");
        json(&mut line, meta.target());
        line.extend_from_slice(b"}\n");
        // serde_json writes UTF-8 only; the check is a formality.
        writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
    }
}

/// Appends `value` as JSON, escaped as serde_json (and so the stock
/// formatter) escapes it.
fn json(line: &mut Vec<u8>, value: impl Serialize) {
    // Writing into a Vec cannot fail, and these values always serialise.
    let _ = serde_json::to_writer(line, &value);
}

/// Writes an event's fields as the members of the `fields` object, each
/// typed as tracing-serde types it: 64-bit numbers and booleans as JSON,
/// anything else (128-bit numbers, `%display`, `?debug`, errors, the
/// message) as a string.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
    first: bool,
}

impl Fields<'_> {
    fn member(&mut self, field: &Field, value: impl Serialize) {
        if !self.first {
            self.line.push(b',');
        }
        self.first = false;
        json(self.line, field.name());
        self.line.push(b':');
        json(self.line, value);
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// The lines `log` writes with the stock JSON format and with ours.
    fn both(log: impl Fn()) -> (String, String) {
        let stock = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(stock.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let ours = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(JsonLines::default())
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let text = |b: Buffer| String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        (text(stock), text(ours))
    }

    /// A line without its timestamp's value, which differs between runs.
    fn untimed(line: &str) -> String {
        let start = line.find("\"timestamp\":\"").expect("a timestamp") + 13;
        let end = start + line[start..].find('"').expect("closed");
        format!("{}{}", &line[..start], &line[end..])
    }

    #[test]
    fn writes_what_the_stock_json_format_writes() {
        let (stock, ours) = both(|| {
            let error = io::Error::other("disk \"full\"");
            tracing::info!(
                target: "conflux::request",
                text = "tab\there \"quoted\" \\ \u{1}\u{7f} é",
                float = 70.653774,
                whole = 2.0,
                huge = 1e300,
                not_a_number = f64::NAN,
                negative = -3i64,
                large = u64::MAX,
                wide = i128::MIN,
                yes = true,
                shown = %"display\nvalue",
                debugged = ?vec!["a", "b"],
                error = &error as &(dyn std::error::Error + 'static),
                "graphql request {}", 7
            );
            tracing::warn!("plain message");
            tracing::error!(empty = "");
        });
        let stock: Vec<String> = stock.lines().map(untimed).collect();
        let ours: Vec<String> = ours.lines().map(untimed).collect();
        assert_eq!(stock.len(), 3);
        assert_eq!(ours, stock);
    }

    #[test]
    fn inside_a_span_the_stock_format_writes_the_line() {
        let (stock, ours) = both(|| {
            let span = tracing::info_span!("upstream.call", service = "users");
            let _entered = span.enter();
            tracing::info!(status = 200, "answered");
        });
        assert!(stock.contains("\"span\":{"), "{stock}");
        assert_eq!(untimed(ours.trim()), untimed(stock.trim()));
    }
}
