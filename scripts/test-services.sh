#!/bin/sh
# Installs what the service tests need (Debian/Ubuntu): a Mosquitto broker for the MQTT sink test, and
# chromium + chromium-driver for the dashboard test, openssl for the MQTT TLS test's certificates. Idempotent and quiet: exits 0 at once when everything is
# present. Without root it prints a note and exits 0, so `make test` still runs and those tests skip with a
# visible reason (under CI=true a missing service is a test failure instead).
set -eu

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

missing=""
have mosquitto || missing="$missing mosquitto"
have chromium || missing="$missing chromium"
have chromedriver || missing="$missing chromium-driver"
have openssl || missing="$missing openssl"  # the MQTT TLS test makes its CA and certificates with it

if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "test-services: not root, not installing:$missing (the tests that need them will skip;" \
         "run as root or: sudo apt-get install$missing)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "test-services: no apt-get here; install$missing by hand (the tests that need them will skip)" >&2
    exit 0
fi
echo "test-services: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
