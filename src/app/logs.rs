//! Log lines as JSON for log pipelines: one object per line, the event's
//! fields at the top level and, beside them, the fields of the spans it was
//! logged in (a message's `message_id`, a scan's `account_id`), so that a
//! query for `message_id` finds every line of a message.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format of `--log-format json`; its fields formatter is
/// [`JsonFields`], which keeps each span's fields as a JSON object.
pub struct JsonLines {
    event: Format<Json>,
}

impl Default for JsonLines {
    fn default() -> Self {
        let event = tracing_subscriber::fmt::format().json().flatten_event(true).with_current_span(false).with_span_list(false);
        JsonLines { event: event.with_target(false) }
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, JsonFields>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::new();
        self.event.format_event(ctx, Writer::new(&mut line), event)?;
        let Some(scope) = ctx.event_scope() else { return writer.write_str(&line) };
        // The event's own fields first, then the innermost span's: a name
        // is written once.
        let mut named: Vec<String> = event.metadata().fields().iter().map(|f| f.name().to_string()).collect();
        let mut spans = Vec::new();
        for span in scope {
            if let Some(fields) = span.extensions().get::<FormattedFields<JsonFields>>() {
                spans.push(serde_json::from_str::<Map<String, Value>>(fields).unwrap_or_default());
            }
        }
        let mut extra = String::new();
        for (name, value) in spans.into_iter().flatten() {
            if named.contains(&name) {
                continue;
            }
            let (Ok(key), Ok(value)) = (serde_json::to_string(&name), serde_json::to_string(&value)) else { continue };
            extra.push_str(&format!(",{key}:{value}"));
            named.push(name);
        }
        match line.trim_end().strip_suffix('}') {
            Some(object) if !extra.is_empty() => writeln!(writer, "{object}{extra}}}"),
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing::{error_span, info};
    use tracing_subscriber::fmt::format::JsonFields;

    use super::JsonLines;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_carries_the_fields_of_its_spans_at_the_top_level() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines::default())
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            info!(account_id = "111122223333", "outside");
            error_span!("message", message_id = "m-1").in_scope(|| {
                info!(event_id = "e-1", "inside");
                error_span!("scan", account_id = "111122223333").in_scope(|| info!(account_id = "444455556666", "nested"));
            });
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"], "outside");
        assert!(lines[0].get("message_id").is_none() && lines[0].get("span").is_none() && lines[0].get("spans").is_none(), "{text}");
        assert_eq!((&lines[1]["message_id"], &lines[1]["event_id"], &lines[1]["level"]), (&"m-1".into(), &"e-1".into(), &"INFO".into()));
        assert_eq!(lines[2]["message_id"], "m-1");
        assert_eq!(lines[2]["account_id"], "444455556666", "the event's own field wins");
        assert_eq!(text.matches("account_id").count(), 2, "written once per line: {text}");
    }
}
