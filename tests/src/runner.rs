//! A small test runner for the test binaries that must also be the local runtime's
//! daemon (`harness = false`): the local runtime starts its daemon by re-running the
//! current program with the daemon argument, which libtest's own `main` cannot answer.
//!
//! It speaks enough of libtest's command line and output for cargo and for people:
//! a name filter, `--list`, one `test NAME ... ok|FAILED` line per test and the
//! `test result:` summary. Each test runs on a fresh multi-threaded tokio runtime, and a
//! panic fails that test only.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

/// A test: its name, and what starts it.
pub struct Trial {
    pub name: String,
    pub start: Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>,
}

impl Trial {
    pub fn new<F, Fut>(name: impl Into<String>, start: F) -> Trial
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Trial {
            name: name.into(),
            start: Box::new(move || Box::pin(start())),
        }
    }
}

/// `Trial`s named after the async test functions given.
#[macro_export]
macro_rules! trials {
    ($($name:ident),* $(,)?) => {
        vec![$($crate::runner::Trial::new(stringify!($name), $name)),*]
    };
}

/// Runs the trials the command line selects, as libtest would report them.
pub fn run(trials: Vec<Trial>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for trial in &trials {
            println!("{}: test", trial.name);
        }
        return ExitCode::SUCCESS;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let selected: Vec<&Trial> = trials
        .iter()
        .filter(|t| filter.as_ref().is_none_or(|f| t.name.contains(f.as_str())))
        .collect();
    let started = std::time::Instant::now();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, Vec::new());
    for trial in &selected {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on((trial.start)());
        }));
        match outcome {
            Ok(()) => {
                println!("test {} ... ok", trial.name);
                passed += 1;
            }
            Err(_) => {
                println!("test {} ... FAILED", trial.name);
                failed.push(trial.name.as_str());
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        trials.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
