#!/bin/bash
# Installs what berth needs to build, run and test on a fresh Debian machine (as root).
# Usage: scripts/deps.sh [build|demo|test|bench|engines|fuzz|lint]
set -euo pipefail
want=(busybox-static libseccomp-dev pkg-config gcc make iproute2)
case "${1:-build}" in
  # api.sh (the Engine API service): the docker CLI from docker.io, docker-compose, a venv for
  # the Python docker SDK (pip), curl, busybox-static
  test) want+=(python3 docker-registry skopeo umoci buildah libcap2-bin docker.io apache2-utils debootstrap openssl containernetworking-plugins iptables uidmap curl podman bsdutils runc docker-compose python3-venv busybox-static slirp4netns passt openssh-client git) ;;
  # fuzz/ (`make fuzz`): libfuzzer-sys compiles libFuzzer's C++ sources
  fuzz) want+=(g++) ;;
  demo) want+=(containernetworking-plugins iptables) ;;
  # bench: podman (with conmon and netavark, as `apt-get install podman` brings them) and the CNI
  # plugins are the peers of the engine bench's containers section; uidmap and slirp4netns its
  # rootless section (an ordinary user's berth and podman)
  # (bench/api.py: dockerd 20.10 with containerd from docker.io against `berth system service`)
  bench) want+=(python3 runc crun buildah docker-registry skopeo umoci debootstrap time podman conmon netavark aardvark-dns containernetworking-plugins iptables docker.io uidmap slirp4netns) ;;
  # integration/engines/*.sh (each starts its own private daemon)
  # podman.sh: podman 4.3 with conmon, netavark + aardvark-dns (named networks with DNS)
  engines) want+=(python3 python3-grpcio runc containerd docker.io iptables curl util-linux procps podman conmon netavark aardvark-dns) ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  }
fi
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || {
  echo "cargo not found: install a Rust toolchain (rustup) first" >&2; exit 1; }
if [ "${1:-build}" = lint ]; then
  for c in rustfmt clippy; do
    sub=${c/rustfmt/fmt}
    cargo "$sub" --version >/dev/null 2>&1 || rustup component add "$c"
  done
fi
