//! The provider binary. Terraform starts it and talks to it over the plugin protocol;
//! the same binary is also the local runtime's daemon and its command line
//! (`terraform-provider-slipway runtime ...`), so there is nothing else to install.

fn main() -> std::process::ExitCode {
    if let Some(code) = slipway_provider::runtime::local::run_from_args() {
        return code;
    }
    tfplug::serve(
        slipway_provider::provider::SlipwayProvider::new(),
        tfplug::ServeOptions::new("registry.terraform.io/slipway/slipway"),
    )
}
