//! What `terraform plan -json` says, read from its machine-readable stream: the
//! Terraform version, the planned changes, and the diagnostics.
//!
//! Reading the stream spares a job the `terraform show -json` of the saved plan (a
//! fourth Terraform process, which starts every provider again for its schema): the
//! `version` message gives the version, the `planned_change` messages the summary.
//! Only a plan that destroys something still needs `show -json`, for the destroyed
//! objects' prior values ([`needs_prior_values`]). With `-json`, Terraform writes its
//! warnings and errors as `diagnostic` messages on stdout instead of boxes on stderr,
//! so [`PlanStream::log`] draws them again as Terraform does, for the job's log and
//! its error summary. The format is Terraform's "machine-readable UI" (0.15.3 and
//! later); unknown message types and fields are ignored, as its documentation asks.

use serde::Deserialize;

use crate::audit::PlanSummary;

/// One line of the stream. Only the fields the agent reads.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "@message", default)]
    message: String,
    /// `version` messages: Terraform's own version.
    terraform: Option<String>,
    /// `planned_change` messages.
    change: Option<Change>,
    /// `diagnostic` messages.
    diagnostic: Option<Diagnostic>,
}

#[derive(Debug, Deserialize)]
struct Change {
    resource: Resource,
    action: String,
}

#[derive(Debug, Deserialize)]
struct Resource {
    addr: String,
}

#[derive(Debug, Deserialize)]
struct Diagnostic {
    severity: String,
    summary: String,
    #[serde(default)]
    detail: String,
    range: Option<Range>,
    snippet: Option<Snippet>,
}

#[derive(Debug, Deserialize)]
struct Range {
    filename: String,
    start: Position,
}

#[derive(Debug, Deserialize)]
struct Position {
    line: u64,
}

#[derive(Debug, Deserialize)]
struct Snippet {
    context: Option<String>,
    code: String,
    start_line: u64,
}

/// What a plan's stream said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PlanStream {
    /// From the `version` message.
    pub terraform_version: Option<String>,
    /// From the `planned_change` messages; `production_destroys` is left empty (the
    /// stream carries no values).
    pub summary: PlanSummary,
    /// The stream as a person reads it: each message's text, diagnostics drawn as
    /// Terraform draws them without `-json` (so `Error: <summary>` starts a line, as
    /// [`crate::terraform::error_summary`] expects).
    pub log: String,
}

impl PlanStream {
    /// Whether the plan destroys anything, so that telling which destroyed objects
    /// were in production needs the plan's prior values (`show -json`).
    pub fn needs_prior_values(&self) -> bool {
        self.summary.destroy > 0
    }
}

/// Reads `terraform plan -json` output. A line that is not a message (Terraform
/// writes some early failures as plain text) goes to the log as it is.
pub fn read(stdout: &str) -> PlanStream {
    let mut out = PlanStream::default();
    let s = &mut out.summary;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(message) = serde_json::from_str::<Message>(line) else {
            out.log.push_str(line);
            out.log.push('\n');
            continue;
        };
        match message.kind.as_str() {
            "version" => out.terraform_version = message.terraform,
            "planned_change" => {
                if let Some(change) = message.change {
                    let address = change.resource.addr;
                    match change.action.as_str() {
                        "create" => {
                            s.add += 1;
                            s.to_add.push(address);
                        }
                        "update" => {
                            s.change += 1;
                            s.to_change.push(address);
                        }
                        "replace" => {
                            s.add += 1;
                            s.destroy += 1;
                            s.to_add.push(address.clone());
                            s.to_destroy.push(address);
                        }
                        "delete" => {
                            s.destroy += 1;
                            s.to_destroy.push(address);
                        }
                        _ => {}
                    }
                }
            }
            "diagnostic" => {
                if let Some(d) = message.diagnostic {
                    let title = match d.severity.as_str() {
                        "error" => "Error",
                        _ => "Warning",
                    };
                    out.log
                        .push_str(&draw(&format!("{title}: {}", d.summary), &d));
                }
                continue;
            }
            _ => {}
        }
        if !message.message.is_empty() {
            out.log.push_str(&message.message);
            out.log.push('\n');
        }
    }
    for list in [&mut s.to_add, &mut s.to_change, &mut s.to_destroy] {
        list.sort();
    }
    out
}

/// A diagnostic the way Terraform prints it without `-json`: its heading, where in
/// the configuration, and the detail.
fn draw(heading: &str, d: &Diagnostic) -> String {
    let mut text = format!("\n{heading}\n");
    if let Some(range) = &d.range {
        let context = d
            .snippet
            .as_ref()
            .and_then(|s| s.context.as_deref())
            .map(|c| format!(", in {c}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "\n  on {} line {}{context}:\n",
            range.filename, range.start.line
        ));
        if let Some(snippet) = &d.snippet {
            for (i, code) in snippet.code.lines().enumerate() {
                text.push_str(&format!("  {:>3}: {code}\n", snippet.start_line + i as u64));
            }
        }
    }
    if !d.detail.is_empty() {
        text.push('\n');
        text.push_str(&d.detail);
        text.push('\n');
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as Terraform 1.11.4 wrote them (`@timestamp`, `@module` and `hook` cut).
    const PLAN: &str = r#"{"@level":"info","@message":"Terraform 1.11.4","terraform":"1.11.4","type":"version","ui":"1.2"}
{"@level":"info","@message":"terraform_data.a: Refreshing state... [id=36259d02]","type":"refresh_start"}
{"@level":"info","@message":"terraform_data.a: Plan to delete","change":{"resource":{"addr":"terraform_data.a","module":"","resource":"terraform_data.a","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"a","resource_key":null},"action":"delete","reason":"delete_because_no_resource_config"},"type":"planned_change"}
{"@level":"info","@message":"terraform_data.b: Plan to update","change":{"resource":{"addr":"terraform_data.b"},"action":"update"},"type":"planned_change"}
{"@level":"info","@message":"terraform_data.d: Plan to create","change":{"resource":{"addr":"terraform_data.d"},"action":"create"},"type":"planned_change"}
{"@level":"info","@message":"terraform_data.c: Plan to replace","change":{"resource":{"addr":"terraform_data.c"},"action":"replace","reason":"cannot_update"},"type":"planned_change"}
{"@level":"info","@message":"data.x.y: Plan to read","change":{"resource":{"addr":"data.x.y"},"action":"read"},"type":"planned_change"}
{"@level":"info","@message":"Plan: 2 to add, 1 to change, 2 to destroy.","changes":{"add":2,"change":1,"import":0,"remove":2,"operation":"plan"},"type":"change_summary"}
"#;

    #[test]
    fn the_summary_counts_like_show_json() {
        let stream = read(PLAN);
        assert_eq!(stream.terraform_version.as_deref(), Some("1.11.4"));
        let s = &stream.summary;
        assert_eq!((s.add, s.change, s.destroy), (2, 1, 2));
        assert_eq!(s.to_add, ["terraform_data.c", "terraform_data.d"]);
        assert_eq!(s.to_change, ["terraform_data.b"]);
        assert_eq!(s.to_destroy, ["terraform_data.a", "terraform_data.c"]);
        assert!(stream.needs_prior_values());
        assert!(stream.log.contains("terraform_data.a: Plan to delete\n"));
        assert!(stream
            .log
            .ends_with("Plan: 2 to add, 1 to change, 2 to destroy.\n"));
        let creates_only = read(
            r#"{"@message":"terraform_data.d: Plan to create","change":{"resource":{"addr":"terraform_data.d"},"action":"create"},"type":"planned_change"}"#,
        );
        assert!(!creates_only.needs_prior_values());
        assert_eq!(read("").summary, PlanSummary::default());
    }

    #[test]
    fn diagnostics_are_drawn_as_terraform_draws_them() {
        let text = r#"{"@level":"info","@message":"Terraform 1.11.4","terraform":"1.11.4","type":"version","ui":"1.2"}
{"@level":"warn","@message":"Warning: Value for undeclared variable","diagnostic":{"severity":"warning","summary":"Value for undeclared variable","detail":"The root module does not declare a variable named \"undeclared\"."},"type":"diagnostic"}
{"@level":"error","@message":"Error: Reference to undeclared input variable","diagnostic":{"severity":"error","summary":"Reference to undeclared input variable","detail":"An input variable with the name \"missing\" has not been declared.","range":{"filename":"main.tf","start":{"line":14,"column":11,"byte":241},"end":{"line":14,"column":22,"byte":252}},"snippet":{"context":"resource \"terraform_data\" \"d\"","code":"  input = var.missing","start_line":14,"highlight_start_offset":10,"highlight_end_offset":21,"values":[]}},"type":"diagnostic"}
{"@level":"error","@message":"Error: Second","diagnostic":{"severity":"error","summary":"Second","detail":""},"type":"diagnostic"}
not JSON: a plain line
"#;
        let stream = read(text);
        let log = &stream.log;
        let (warning, error) = (log.find("Warning: Value"), log.find("Error: Reference"));
        assert!(warning.is_some() && warning < error, "{log}");
        assert!(
            log.contains("  on main.tf line 14, in resource \"terraform_data\" \"d\":\n   14:   input = var.missing\n"),
            "{log}"
        );
        assert!(log.contains("has not been declared."), "{log}");
        assert!(log.ends_with("not JSON: a plain line\n"), "{log}");
    }
}
