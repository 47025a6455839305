//! Every example under `examples/`, and every `terraform` code block in `docs/`, is a
//! valid configuration for the provider as built from this workspace: `terraform
//! validate` passes on every Terraform version found on the machine (which also runs
//! the provider's own validation: schema, validators, `ValidateResourceConfig`), and
//! `terraform fmt` has nothing to change.
//!
//! Examples are found by listing `examples/`, so a new example is covered without
//! touching this file. `validate` never configures the provider, so examples for
//! Kubernetes or the production gate need no cluster and no agent key.

use std::path::{Path, PathBuf};

use slipway_tests::terraform::{self, provider_binary, TerraformBinary, Workspace};

const SOURCE: &str = "slipway/slipway";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// Every directory in `examples/` that holds a `.tf` file, sorted.
fn examples() -> Vec<PathBuf> {
    let dir = repository().join("examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !tf_files(p).is_empty())
        .collect();
    found.sort();
    found
}

fn tf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf" || x == "tfvars"))
        .collect();
    files.sort();
    files
}

/// A workspace using the locally built provider, with `files` (name, contents) in it.
fn workspace(tf: &TerraformBinary, files: &[(String, String)]) -> Workspace {
    let provider = provider_binary();
    let bin = provider.parent().expect("bin dir");
    let ws = Workspace::new(tf, &[(SOURCE, bin)]);
    for (name, text) in files {
        std::fs::write(ws.path().join(name), text).expect("write configuration");
    }
    ws
}

/// Runs `terraform validate` and `terraform fmt -check` on `files`; a problem names
/// `what` and the Terraform version.
fn check(tf: &TerraformBinary, what: &str, files: &[(String, String)]) -> Vec<String> {
    let ws = workspace(tf, files);
    let mut problems = Vec::new();
    let run = ws.run(&["validate", "-no-color"]);
    if run.code != 0 || !run.stdout.contains("The configuration is valid") {
        problems.push(format!(
            "{what}: terraform {} validate failed (exit {}):\n{}",
            tf.version,
            run.code,
            run.all_output()
        ));
    }
    let run = ws.run(&["fmt", "-check", "-diff", "-no-color"]);
    if run.code != 0 {
        problems.push(format!(
            "{what}: terraform {} fmt would change it:\n{}",
            tf.version,
            run.all_output()
        ));
    }
    problems
}

#[test]
fn every_example_validates_on_every_terraform() {
    let examples = examples();
    assert!(!examples.is_empty(), "no examples found in examples/");
    let mut problems = Vec::new();
    for dir in &examples {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let files: Vec<(String, String)> = tf_files(dir)
            .iter()
            .map(|p| {
                let text =
                    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                (name.into_owned(), text)
            })
            .collect();
        // How to run it: a README, or a header comment in main.tf.
        let explained = dir.join("README.md").is_file()
            || files
                .iter()
                .any(|(n, text)| n == "main.tf" && text.starts_with('#'));
        if !explained {
            problems.push(format!(
                "examples/{name}: add a README.md or a header comment in main.tf saying how to run it"
            ));
        }
        for tf in terraform::required() {
            eprintln!("--- examples/{name} on terraform {}", tf.version);
            problems.extend(check(&tf, &format!("examples/{name}"), &files));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The `terraform` code blocks of a Markdown page, with their first line numbers.
fn terraform_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut current, fence) {
            (None, true) if line.trim() == "```terraform" => {
                current = Some((i + 2, String::new()));
            }
            (Some(_), true) => blocks.extend(current.take()),
            (Some((_, body)), false) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "md") {
            out.push(path);
        }
    }
}

#[test]
fn every_terraform_block_in_the_docs_validates_on_every_terraform() {
    let docs = repository().join("docs");
    let mut pages = Vec::new();
    markdown_files(&docs, &mut pages);
    pages.sort();
    assert!(!pages.is_empty(), "no pages in {}", docs.display());
    // A snippet without its own `terraform` block gets the provider requirement that
    // every configuration using the provider has.
    let requirement = format!(
        "terraform {{\n  required_providers {{\n    slipway = {{ source = \"{SOURCE}\" }}\n  }}\n}}\n"
    );
    let mut problems = Vec::new();
    let mut count = 0;
    let binaries = terraform::required();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("read page");
        let relative = page.strip_prefix(repository()).unwrap_or(page).display();
        for (line, body) in terraform_blocks(&text) {
            count += 1;
            let mut files = vec![("main.tf".to_owned(), body.clone())];
            if !body.contains("required_providers") {
                files.push(("versions.tf".to_owned(), requirement.clone()));
            }
            for tf in &binaries {
                problems.extend(check(tf, &format!("{relative}:{line}"), &files));
            }
        }
    }
    assert!(count > 0, "no ```terraform blocks in docs/");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn terraform_blocks_are_found_in_markdown() {
    let text = "# Page\n\n```terraform\nresource \"a\" \"b\" {}\n```\n\n```shell\nls\n```\n\n```terraform\nvariable \"x\" {}\n```\n";
    let blocks = terraform_blocks(text);
    assert_eq!(
        blocks,
        vec![
            (4, "resource \"a\" \"b\" {}\n".to_owned()),
            (12, "variable \"x\" {}\n".to_owned())
        ]
    );
}
