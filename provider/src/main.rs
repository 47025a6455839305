//! The provider binary. Terraform starts it and talks to it over the plugin protocol;
//! the same binary is also the local runtime's daemon and its command line
//! (`terraform-provider-slipway runtime ...`), so there is nothing else to install.

fn main() -> std::process::ExitCode {
    if let Some(code) = slipway_provider::runtime::local::run_from_args() {
        return code;
    }
    close_inherited_descriptors_on_exec();
    tfplug::serve(
        slipway_provider::provider::SlipwayProvider::new(),
        tfplug::ServeOptions::new("registry.terraform.io/slipway/slipway")
            .more_help(slipway_provider::runtime::local::cli::SUMMARY),
    )
}

/// Terraform can start its plugins with more open descriptors than stdin, stdout and
/// stderr (Terraform 1.0 passes its own output pipes along). The local runtime's daemon,
/// which this process may start and which outlives the Terraform run, would inherit
/// them and hold Terraform's output open, so whoever reads it (a CI job, `| tee`, the
/// agent) would wait forever. Marking them close-on-exec keeps them in this process
/// only.
fn close_inherited_descriptors_on_exec() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let descriptors: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in descriptors {
        // SAFETY: the descriptor is only borrowed for this one call, and nothing else
        // runs yet; one that is not open (the directory listing's own) makes fcntl fail,
        // which is harmless.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}
