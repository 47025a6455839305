//! The provider binary: Terraform starts it and talks to it over the plugin protocol.

fn main() -> std::process::ExitCode {
    tfplug::serve(
        slipway_provider::provider::SlipwayProvider::new(),
        tfplug::ServeOptions::new("registry.terraform.io/slipway/slipway"),
    )
}
