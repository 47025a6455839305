//! The documentation in `docs/` against the provider's real schema: the one
//! GetProviderSchema serves, built from `SlipwayProvider`'s `schema()`, `resources()`
//! and `data_sources()` exactly as tfplug's server builds it.
//!
//! The pages follow the Terraform registry's layout: `docs/index.md` for the provider
//! configuration, `docs/resources/<name>.md` and `docs/data-sources/<name>.md` for
//! `slipway_<name>`. On a page, an attribute is documented by a list item that starts
//! with its full dotted path in backticks and its properties in parentheses:
//!
//! ```text
//! - `healthcheck.interval` (String, Optional, Default `"10s"`) How often ...
//! ```
//!
//! Nested attributes and nested blocks are written `parent.child` (a list element's
//! attribute too: `ports.port`). The parentheses hold the type (`String`, `Number`,
//! `Bool`, `List of String`, `Map of String`, `Object`, `List of Object`, ...; `Block`,
//! `Block List`, ... for nested blocks) and then, as the schema says: `Required` or
//! `Optional`; `Computed` for read-only attributes (computed and not optional);
//! `Sensitive`; `Forces replacement` (RequiresReplace); `Default `<value>``.
//!
//! The test fails naming the page and the attribute when an attribute of the schema is
//! missing from its page, when a page documents an attribute the schema does not have,
//! or when the documented type or properties differ from the schema's; and when a page
//! is missing, or exists for a resource or data source the provider does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use slipway_provider::provider::SlipwayProvider;
use tfplug::schema::{AttributeKind, Block, Nesting, PlanModifier};
use tfplug::{Provider, Type, Value};

/// What a page must say about one attribute: its type and its set of properties.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: String,
    properties: BTreeSet<String>,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A stable, readable order: the one the pages use.
        let order = [
            "Required",
            "Optional",
            "Computed",
            "Sensitive",
            "Forces replacement",
        ];
        let mut parts = vec![self.kind.clone()];
        for p in order {
            if self.properties.contains(p) {
                parts.push(p.to_owned());
            }
        }
        parts.extend(
            self.properties
                .iter()
                .filter(|p| !order.contains(&p.as_str()))
                .cloned(),
        );
        write!(f, "({})", parts.join(", "))
    }
}

/// One page and the attributes (full dotted path → entry) it must document.
struct Page {
    /// Relative to `docs/`.
    path: String,
    /// `slipway_environment`, or `provider` for the provider's page.
    subject: String,
    attributes: BTreeMap<String, Entry>,
    /// Resources have an Import section.
    importable: bool,
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "Bool".into(),
        Type::Number => "Number".into(),
        Type::String => "String".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Object(_) => "Object".into(),
        Type::Tuple(_) => "Tuple".into(),
    }
}

fn nesting_name(nesting: Nesting, element: &str) -> String {
    match nesting {
        Nesting::Single | Nesting::Group => element.to_owned(),
        Nesting::List => format!("List of {element}"),
        Nesting::Set => format!("Set of {element}"),
        Nesting::Map => format!("Map of {element}"),
    }
}

fn block_nesting_name(nesting: Nesting) -> String {
    match nesting {
        Nesting::Single | Nesting::Group => "Block".into(),
        Nesting::List => "Block List".into(),
        Nesting::Set => "Block Set".into(),
        Nesting::Map => "Block Map".into(),
    }
}

/// A default as it is written in HCL.
fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every attribute of `block` (nested attributes and nested blocks included), by full
/// dotted path.
fn walk(prefix: &str, block: &Block, out: &mut BTreeMap<String, Entry>) {
    for attribute in &block.attributes {
        let path = format!("{prefix}{}", attribute.name);
        let kind = match &attribute.kind {
            AttributeKind::Typed(ty) => type_name(ty),
            AttributeKind::Nested { nesting, .. } => nesting_name(*nesting, "Object"),
        };
        let mut properties = BTreeSet::new();
        if attribute.required {
            properties.insert("Required".to_owned());
        }
        if attribute.optional {
            properties.insert("Optional".to_owned());
        }
        // Optional and computed (a default, or Terraform 1.0's needs) reads as
        // "Optional" to a user; "Computed" marks what only the provider sets.
        if attribute.computed && !attribute.optional && !attribute.required {
            properties.insert("Computed".to_owned());
        }
        if attribute.sensitive {
            properties.insert("Sensitive".to_owned());
        }
        if attribute.deprecated {
            properties.insert("Deprecated".to_owned());
        }
        if attribute.has_modifier(PlanModifier::RequiresReplace) {
            properties.insert("Forces replacement".to_owned());
        }
        if let Some(default) = &attribute.default {
            properties.insert(format!("Default `{}`", literal(default)));
        }
        out.insert(path.clone(), Entry { kind, properties });
        if let AttributeKind::Nested { attributes, .. } = &attribute.kind {
            let nested = Block {
                attributes: attributes.clone(),
                ..Block::default()
            };
            walk(&format!("{path}."), &nested, out);
        }
    }
    for nested in &block.blocks {
        let path = format!("{prefix}{}", nested.name);
        let mut properties = BTreeSet::new();
        properties.insert(if nested.min_items > 0 {
            "Required".to_owned()
        } else {
            "Optional".to_owned()
        });
        if nested.block.deprecated {
            properties.insert("Deprecated".to_owned());
        }
        out.insert(
            path.clone(),
            Entry {
                kind: block_nesting_name(nested.nesting),
                properties,
            },
        );
        walk(&format!("{path}."), &nested.block, out);
    }
}

/// The pages the provider's schema calls for.
fn expected_pages() -> Vec<Page> {
    let provider = SlipwayProvider::new();
    let mut pages = Vec::new();
    let mut attributes = BTreeMap::new();
    walk("", &provider.schema().block, &mut attributes);
    pages.push(Page {
        path: "index.md".into(),
        subject: "the provider configuration".into(),
        attributes,
        importable: false,
    });
    for resource in provider.resources() {
        let mut attributes = BTreeMap::new();
        walk("", &resource.schema().block, &mut attributes);
        pages.push(Page {
            path: format!("resources/{}.md", page_name(resource.type_name())),
            subject: format!("resource {}", resource.type_name()),
            attributes,
            importable: true,
        });
    }
    for data_source in provider.data_sources() {
        let mut attributes = BTreeMap::new();
        walk("", &data_source.schema().block, &mut attributes);
        pages.push(Page {
            path: format!("data-sources/{}.md", page_name(data_source.type_name())),
            subject: format!("data source {}", data_source.type_name()),
            attributes,
            importable: false,
        });
    }
    pages
}

fn page_name(type_name: &str) -> &str {
    type_name.strip_prefix("slipway_").unwrap_or(type_name)
}

/// The attribute entries of a page: list items `- `path` (...)` outside code blocks.
/// Returns (path, type and properties as written, line number).
fn documented(text: &str) -> Vec<(String, Entry, usize)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let Some(rest) = trimmed.strip_prefix("- `") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once('`') else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(" (") else {
            continue;
        };
        let Some(inside) = parenthesised(rest) else {
            continue;
        };
        let parts = split_outside_code(inside);
        let Some((kind, properties)) = parts.split_first() else {
            continue;
        };
        out.push((
            name.to_owned(),
            Entry {
                kind: kind.clone(),
                properties: properties.iter().cloned().collect(),
            },
            i + 1,
        ));
    }
    out
}

/// The text up to the `)` that closes an opening parenthesis, ignoring code spans.
fn parenthesised(text: &str) -> Option<&str> {
    let mut in_code = false;
    for (i, c) in text.char_indices() {
        match c {
            '`' => in_code = !in_code,
            ')' if !in_code => return Some(&text[..i]),
            _ => {}
        }
    }
    None
}

fn split_outside_code(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                current.push(c);
            }
            ',' if !in_code => {
                parts.push(current.trim().to_owned());
                current.clear();
            }
            _ => current.push(c),
        }
    }
    parts.push(current.trim().to_owned());
    parts
}

/// Everything wrong with one page's text, each naming the page and the attribute.
fn check_page(page: &Page, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let file = format!("docs/{}", page.path);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (name, entry, line) in documented(text) {
        if let Some(first) = seen.insert(name.clone(), line) {
            problems.push(format!(
                "{file}:{line}: `{name}` is documented twice (also on line {first})"
            ));
        }
        match page.attributes.get(&name) {
            None => problems.push(format!(
                "{file}:{line}: documents `{name}`, which {} does not have; remove it or fix the name",
                page.subject
            )),
            Some(expected) if *expected != entry => problems.push(format!(
                "{file}:{line}: `{name}` is documented as {entry}, but the schema of {} says {expected}",
                page.subject
            )),
            Some(_) => {}
        }
    }
    for (name, expected) in &page.attributes {
        if !seen.contains_key(name) {
            problems.push(format!(
                "{file}: {} has `{name}` {expected}, which the page does not document; add a line `- `{name}` {expected} ...`",
                page.subject
            ));
        }
    }
    if !has_example(text) {
        problems.push(format!(
            "{file}: no \"## Example Usage\" section with a ```terraform block"
        ));
    }
    if page.importable {
        let subject = page.subject.trim_start_matches("resource ");
        let command = format!("terraform import {subject}.");
        if !text.contains("## Import") || !text.contains(&command) {
            problems.push(format!(
                "{file}: no \"## Import\" section showing `{command}NAME ID`"
            ));
        }
    }
    problems
}

fn has_example(text: &str) -> bool {
    text.split_once("## Example Usage")
        .is_some_and(|(_, rest)| rest.contains("```terraform"))
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// The `.md` files directly in `docs/<dir>`, as paths relative to `docs/`.
fn pages_in(dir: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(docs_dir().join(dir)) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                out.insert(format!("{dir}/{name}"));
            }
        }
    }
    out
}

#[test]
fn every_attribute_is_documented_and_nothing_else() {
    let pages = expected_pages();
    let mut problems = Vec::new();
    for page in &pages {
        match std::fs::read_to_string(docs_dir().join(&page.path)) {
            Ok(text) => problems.extend(check_page(page, &text)),
            Err(e) => problems.push(format!(
                "docs/{} is missing ({e}): it documents {}",
                page.path, page.subject
            )),
        }
    }
    let wanted: BTreeSet<&str> = pages.iter().map(|p| p.path.as_str()).collect();
    for dir in ["resources", "data-sources"] {
        for path in pages_in(dir) {
            if !wanted.contains(path.as_str()) {
                problems.push(format!(
                    "docs/{path} documents something the provider does not have (it has: {})",
                    wanted.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the documentation and the schema disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_schema_walk_covers_nested_attributes_blocks_and_provider_config() {
    let pages = expected_pages();
    let page = |path: &str| {
        pages
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("no page {path}"))
    };
    let app = &page("resources/application.md").attributes;
    assert_eq!(app["ports"].kind, "List of Object");
    assert_eq!(app["ports.port"].to_string(), "(Number, Required)");
    assert_eq!(
        app["healthcheck.interval"].to_string(),
        "(String, Optional, Default `\"10s\"`)"
    );
    assert_eq!(
        app["environment_id"].to_string(),
        "(String, Required, Forces replacement)"
    );
    assert_eq!(
        app["secrets"].to_string(),
        "(Map of String, Optional, Sensitive)"
    );
    assert_eq!(app["status"].to_string(), "(String, Computed)");
    let ds = &page("data-sources/environment.md").attributes;
    assert_eq!(ds["provenance.verified"].to_string(), "(Bool, Computed)");
    let provider = &page("index.md").attributes;
    assert_eq!(
        provider["production_requires_signed_provenance"].to_string(),
        "(Bool, Optional, Deprecated)"
    );

    // Nested blocks (the provider has none today) are walked the same way.
    let block = Block::new().block(tfplug::NestedBlock::new(
        "rule",
        Nesting::List,
        Block::new().attribute(tfplug::Attribute::string("match").required()),
    ));
    let mut out = BTreeMap::new();
    walk("", &block, &mut out);
    assert_eq!(out["rule"].to_string(), "(Block List, Optional)");
    assert_eq!(out["rule.match"].to_string(), "(String, Required)");
}

#[test]
fn the_check_names_missing_unknown_and_wrong_attributes() {
    let mut attributes = BTreeMap::new();
    walk(
        "",
        &Block::new()
            .attribute(tfplug::Attribute::string("name").required())
            .attribute(tfplug::Attribute::number("replicas").default(1))
            .attribute(
                tfplug::Attribute::nested(
                    "healthcheck",
                    Nesting::Single,
                    vec![tfplug::Attribute::string("path").optional()],
                )
                .optional(),
            ),
        &mut attributes,
    );
    let page = Page {
        path: "resources/thing.md".into(),
        subject: "resource slipway_thing".into(),
        attributes,
        importable: true,
    };
    let text = "## Example Usage\n\n```terraform\n- `ignored` (String) inside code\n```\n\n\
        - `name` (String, Required) The name.\n\
        - `replicas` (Number, Optional) How many.\n\
        - `healthcheck` (Object, Optional) The check.\n\
        - `healthcheck.port` (Number, Optional) Not in the schema.\n\
        - `SOMETHING`, in prose, is not an entry.\n";
    let problems = check_page(&page, text).join("\n");
    assert!(
        problems.contains("does not document; add a line `- `healthcheck.path` (String, Optional)"),
        "{problems}"
    );
    assert!(
        problems.contains(
            "docs/resources/thing.md:10: documents `healthcheck.port`, which resource slipway_thing does not have"
        ),
        "{problems}"
    );
    assert!(
        problems.contains(
            "`replicas` is documented as (Number, Optional), but the schema of resource slipway_thing says (Number, Optional, Default `1`)"
        ),
        "{problems}"
    );
    assert!(problems.contains("\"## Import\""), "{problems}");
    assert!(!problems.contains("ignored"), "{problems}");
    assert!(!problems.contains("SOMETHING"), "{problems}");
    assert_eq!(problems.lines().count(), 4, "{problems}");
}
