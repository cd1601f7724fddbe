#!/usr/bin/env bash
# Install the Debian packages tezgah needs, once: FreeCAD (CAM engine), wrk (benchmarks).
# With --services, also PostgreSQL, Redis and RabbitMQ for the scaled-mode tests.
set -euo pipefail
packages=(freecad-python3 wrk)
if [[ "${1:-}" == "--services" ]]; then
  packages+=(postgresql redis-server rabbitmq-server)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if (( ${#missing[@]} )); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
