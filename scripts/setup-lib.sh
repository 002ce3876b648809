# shellcheck shell=bash
# Shared by scripts/setup.sh and scripts/setup-tests.sh (sourced, not run).

log() { printf '==> %s\n' "$*"; }

# Installs those of the Debian packages "$@" that are not installed yet.
apt_install() {
  local missing=() filtered=() package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  # A Node.js from elsewhere (nvm, NodeSource) is fine; do not fight it with Debian's.
  if command -v node >/dev/null && command -v npm >/dev/null; then
    for package in "${missing[@]}"; do
      [[ "$package" == nodejs || "$package" == npm ]] || filtered+=("$package")
    done
    missing=("${filtered[@]}")
  fi
  if ((${#missing[@]})); then
    log "installing system packages: ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# Install from the lock file only when it changed since the last install. `npm install
# --no-save` keeps the lock's versions and integrity hashes like `npm ci`, but accepts a
# lock without other platforms' optional packages (the Tauri CLI's darwin/win32 builds),
# which registry mirrors that carry only this platform's packages cannot resolve.
npm_install() {
  local dir=$1
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    log "installing Node packages in $dir"
    (cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error)
  fi
}
